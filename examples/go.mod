// The examples and tools (bench, compare, plot) are their own module so that
// their dependencies (gopacket, gonum plot) stay out of the graph of modules
// that import only github.com/memif-go/memif. The examples use the binding in
// this checkout (replace), and its internal/ packages: Go's internal rule is
// by import path, and github.com/memif-go/memif/examples/... is inside
// github.com/memif-go/memif/.
module github.com/memif-go/memif/examples

go 1.25.0

require (
	github.com/gopacket/gopacket v1.7.7
	github.com/memif-go/memif v0.0.0
	github.com/stretchr/testify v1.12.1
	golang.org/x/sys v0.45.0
	gonum.org/v1/plot v0.17.0
)

require (
	codeberg.org/go-fonts/liberation v0.5.0 // indirect
	codeberg.org/go-latex/latex v0.2.0 // indirect
	codeberg.org/go-pdf/fpdf v0.11.1 // indirect
	git.sr.ht/~sbinet/gg v0.7.0 // indirect
	github.com/ajstarks/svgo v0.0.0-20211024235047-1546f124cd8b // indirect
	github.com/golang/freetype v0.0.0-20170609003504-e2365dfdc4a0 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/image v0.30.0 // indirect
	golang.org/x/net v0.55.0 // indirect
	golang.org/x/text v0.37.0 // indirect
)

replace github.com/memif-go/memif => ../
