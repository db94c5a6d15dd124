package exflag

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func parse(t *testing.T, prefix string, d Defaults, args ...string) (*Link, error) {
	t.Helper()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var l Link
	l.Register(fs, prefix, d)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return &l, l.Validate()
}

func TestDefaultsAndRoles(t *testing.T) {
	d := Defaults{Socket: "@s", Ring: true, Burst: 32, MaxBurst: 256, Retry: time.Second}
	l, err := parse(t, "", d)
	if err != nil || l.Master || l.Socket != "@s" || l.Queues != 1 || l.BufferSize != 2048 || l.Log2Ring != 10 ||
		l.Burst != 32 || l.Retry != time.Second {
		t.Fatalf("%+v, %v", l, err)
	}
	if l, _ := parse(t, "", d, "-master", "-id", "7", "-secret", "x"); !l.Master || l.ConnArgs("i").InterfaceID != 7 ||
		l.ConnArgs("i").Secret != "x" || l.SocketArgs("app").Path != "@s" {
		t.Fatalf("-master: %+v", l)
	}
	d.Role = SlaveFlag
	if l, _ := parse(t, "", d); !l.Master {
		t.Fatal("-slave unset: not master")
	}
	if l, _ := parse(t, "", d, "-slave"); l.Master {
		t.Fatal("-slave: master")
	}
	if l, _ := parse(t, "b-", Defaults{Role: RoleFlag}, "-b-socket", "@b", "-b-role", "master"); !l.Master || l.Socket != "@b" {
		t.Fatalf("-b-role master: %+v", l)
	}
}

func TestValidateTexts(t *testing.T) {
	d := Defaults{Socket: "@s", Ring: true, Burst: 32, MaxBurst: 256, Retry: time.Second}
	for _, c := range []struct {
		prefix string
		d      Defaults
		args   []string
		want   string
	}{
		{"a-", Defaults{Role: RoleFlag}, nil, "-a-socket is required"},
		{"a-", Defaults{Role: RoleFlag}, []string{"-a-socket", "@x", "-a-role", "boss"}, `-a-role "boss" is neither master nor slave`},
		{"", d, []string{"-id", "4294967296"}, "-id 4294967296 does not fit 32 bits"},
		{"", d, []string{"-queues", "0"}, "-queues 0 is outside 1..255"},
		{"", d, []string{"-buffer-size", "64"}, "-buffer-size 64 is outside 128..65535"},
		{"", d, []string{"-ring", "0"}, "-ring 0 is outside 1..14"},
		{"", d, []string{"-burst", "257"}, "-burst 257 is outside 1..256"},
		{"", d, []string{"-retry", "0"}, "-retry must be positive"},
	} {
		if _, err := parse(t, c.prefix, c.d, c.args...); err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
}
