module github.com/memif-go/memif/memifpacket

go 1.26.0

require (
	github.com/gopacket/gopacket v1.7.7
	github.com/memif-go/memif v0.0.0
	github.com/stretchr/testify v1.12.1
)

require (
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/sys v0.49.0 // indirect
)

replace github.com/memif-go/memif => ../
