// Package exflag holds the memif link flags the example programs share:
// registration with each example's defaults, validation with the texts the
// examples print, the memif arguments built from them, and the
// parse-validate-exit steps of a command's main.
package exflag

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/memif-go/memif"
)

// Role is how a command picks its memif role.
type Role int

const (
	MasterFlag Role = iota // -master; a slave by default
	SlaveFlag              // -slave; a master by default
	RoleFlag               // -role master|slave; a slave by default
)

// Defaults are an example's defaults for Register, and the help texts that
// differ between examples.
type Defaults struct {
	Role       Role
	Socket     string // "" makes -socket required
	Peer       string // whose id and secret must match, e.g. "the receiver's"; "" says nothing
	QueuesHelp string
	// Ring registers -buffer-size (2048) and -ring (10): the slave's
	// buffer and ring sizes.
	Ring bool
	// Burst and MaxBurst are -burst's default and upper bound; MaxBurst 0
	// registers no -burst.
	Burst, MaxBurst int
	BurstHelp       string
	// Retry is -retry's default; 0 registers no -retry.
	Retry     time.Duration
	RetryHelp string
}

// Link is one memif interface's flags. Master is settled by Validate.
type Link struct {
	Master     bool
	Socket     string
	ID         uint
	Secret     string
	Queues     int
	BufferSize int // 0 without Defaults.Ring: libmemif's default
	Log2Ring   int
	Burst      int
	Retry      time.Duration

	d      Defaults
	prefix string
	slave  bool   // -slave
	role   string // -role
}

// Register defines the link's flags in fs, each name prefixed with prefix
// (e.g. "a-"; the help then starts with "interface a: ").
func (l *Link) Register(fs *flag.FlagSet, prefix string, d Defaults) {
	l.d, l.prefix = d, prefix
	help := func(s string) string {
		if prefix == "" {
			return s
		}
		return "interface " + strings.TrimSuffix(prefix, "-") + ": " + s
	}
	match := ""
	if d.Peer != "" {
		match = " (must match " + d.Peer + ")"
	}
	switch d.Role {
	case MasterFlag:
		fs.BoolVar(&l.Master, prefix+"master", false, help("be the memif master (default: slave)"))
	case SlaveFlag:
		fs.BoolVar(&l.slave, prefix+"slave", false, help("be the memif slave (default: master)"))
	case RoleFlag:
		fs.StringVar(&l.role, prefix+"role", "slave", help("master or slave"))
	}
	fs.StringVar(&l.Socket, prefix+"socket", d.Socket, help("socket path ('@' = abstract)"))
	fs.UintVar(&l.ID, prefix+"id", 0, help("memif interface id"+match))
	fs.StringVar(&l.Secret, prefix+"secret", "", help("shared secret"+match))
	fs.IntVar(&l.Queues, prefix+"queues", 1, help(d.QueuesHelp))
	if d.Ring {
		fs.IntVar(&l.BufferSize, prefix+"buffer-size", 2048, help("buffer size as slave (the slave's value wins)"))
		fs.IntVar(&l.Log2Ring, prefix+"ring", 10, help("log2 of the ring size as slave"))
	}
	if d.MaxBurst > 0 {
		fs.IntVar(&l.Burst, prefix+"burst", d.Burst, help(d.BurstHelp))
	}
	if d.Retry > 0 {
		fs.DurationVar(&l.Retry, prefix+"retry", d.Retry, help(d.RetryHelp))
	}
}

// Validate checks the registered flags and settles Master.
func (l *Link) Validate() error {
	p := "-" + l.prefix
	switch {
	case l.d.Socket == "" && l.Socket == "":
		return fmt.Errorf("%ssocket is required", p)
	case l.d.Role == RoleFlag && l.role != "master" && l.role != "slave":
		return fmt.Errorf("%srole %q is neither master nor slave", p, l.role)
	case l.ID > 1<<32-1:
		return fmt.Errorf("%sid %d does not fit 32 bits", p, l.ID)
	case l.Queues < 1 || l.Queues > 255:
		return fmt.Errorf("%squeues %d is outside 1..255", p, l.Queues)
	case l.d.Ring && (l.BufferSize < 128 || l.BufferSize > 65535):
		return fmt.Errorf("%sbuffer-size %d is outside 128..65535", p, l.BufferSize)
	case l.d.Ring && (l.Log2Ring < 1 || l.Log2Ring > memif.MaxLog2RingSize):
		return fmt.Errorf("%sring %d is outside 1..%d", p, l.Log2Ring, memif.MaxLog2RingSize)
	case l.d.MaxBurst > 0 && (l.Burst < 1 || l.Burst > l.d.MaxBurst):
		return fmt.Errorf("%sburst %d is outside 1..%d", p, l.Burst, l.d.MaxBurst)
	case l.d.Retry > 0 && l.Retry <= 0:
		return fmt.Errorf("%sretry must be positive", p)
	}
	switch l.d.Role {
	case SlaveFlag:
		l.Master = !l.slave
	case RoleFlag:
		l.Master = l.role == "master"
	}
	return nil
}

// SocketArgs is the link's socket for the application app.
func (l *Link) SocketArgs(app string) memif.SocketArgs {
	return memif.SocketArgs{Path: l.Socket, AppName: app}
}

// ConnArgs is the link's interface, named ifName, with as many rings each
// way as -queues.
func (l *Link) ConnArgs(ifName string) memif.ConnArgs {
	return memif.ConnArgs{Secret: l.Secret, IsMaster: l.Master, InterfaceID: uint32(l.ID),
		NumS2MRings: uint8(l.Queues), NumM2SRings: uint8(l.Queues), BufferSize: uint16(l.BufferSize),
		Log2RingSize: uint8(l.Log2Ring), InterfaceName: ifName}
}

// RoleText is how the examples' start-up line names the role.
func (l *Link) RoleText() string {
	if l.Master {
		return "master, listening on"
	}
	return "slave, connecting to"
}

// Parse parses the command line, with usage ahead of the flags' defaults in
// -h, and exits with status 2 and "name: err" if validate fails.
func Parse(name, usage string, validate func() error) {
	flag.Usage = func() {
		fmt.Fprint(flag.CommandLine.Output(), usage)
		flag.PrintDefaults()
	}
	flag.Parse()
	Exit(name, 2, validate())
}

// Exit prints "name: err" to stderr and exits with status code; it returns
// if err is nil.
func Exit(name string, code int, err error) {
	if err == nil {
		return
	}
	fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
	os.Exit(code)
}

// First is the first non-nil error of errs: the examples report one flag
// error at a time.
func First(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// InRange is nil if lo <= v <= hi, else the examples' "-flag v is outside
// lo..hi".
func InRange(flag string, v, lo, hi int) error {
	if v < lo || v > hi {
		return fmt.Errorf("-%s %d is outside %d..%d", flag, v, lo, hi)
	}
	return nil
}

// Positive is nil if every d is positive, else "what must be positive".
func Positive(what string, d ...time.Duration) error {
	for _, d := range d {
		if d <= 0 {
			return errors.New(what + " must be positive")
		}
	}
	return nil
}
