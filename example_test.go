//go:build linux && cgo

package memif_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/memif-go/memif"
)

// The binding, one libmemif call to one method: a master and a slave on one
// socket in one process, driven by PollEvent on this goroutine, and four
// packets written in place in shared memory and received as views.
func Example() {
	// An abstract socket (leading '@'): nothing on disk.
	sock, err := memif.CreateSocket(&memif.SocketArgs{Path: fmt.Sprintf("@memif-example-%d", os.Getpid())})
	if err != nil {
		log.Fatal(err)
	}
	defer sock.Delete()
	up := 0
	onUp := func(*memif.Conn) error { up++; return nil }
	master, err := memif.Create(&memif.ConnArgs{Socket: sock, IsMaster: true, OnConnect: onUp})
	if err != nil {
		log.Fatal(err)
	}
	defer master.Delete()
	slave, err := memif.Create(&memif.ConnArgs{Socket: sock, OnConnect: onUp})
	if err != nil {
		log.Fatal(err)
	}
	defer slave.Delete()
	for deadline := time.Now().Add(5 * time.Second); up < 2; { // callbacks run inside PollEvent
		if err := sock.PollEvent(100 * time.Millisecond); err != nil || time.Now().After(deadline) {
			log.Fatal("no link: ", err)
		}
	}

	tx, _ := memif.NewBuffers(4) // one batch per queue, reused for every burst
	defer tx.Free()
	rx, _ := memif.NewBuffers(4)
	defer rx.Free()
	n, err := slave.BufferAlloc(0, tx, 4, 64) // four 64-byte buffers in shared memory
	if err != nil {
		log.Fatal(err)
	}
	for i := range n {
		tx.SetLen(i, copy(tx.Data(i), fmt.Sprintf("packet %d", i))) // written in place
	}
	if _, err := slave.TxBurst(0, tx, n); err != nil {
		log.Fatal(err)
	}
	got, _, err := master.RxBurst(0, rx, rx.Cap())
	if err != nil {
		log.Fatal(err)
	}
	for i := range got {
		fmt.Printf("%s (%d bytes)\n", rx.Data(i), rx.Len(i)) // views into shared memory
	}
	master.RefillQueue(0, got, 0) // the views die here
	// Output:
	// packet 0 (8 bytes)
	// packet 1 (8 bytes)
	// packet 2 (8 bytes)
	// packet 3 (8 bytes)
}

// The Go-native layer: a Loop runs the socket on Go's netpoller until its
// context ends, callbacks run on the loop's goroutine, and any goroutine may
// create connections. A TxWriter and an RxReader move one packet per call.
func ExampleLoop() {
	loop, err := memif.NewLoop(&memif.LoopArgs{Socket: memif.SocketArgs{Path: fmt.Sprintf("@memif-example-loop-%d", os.Getpid())}})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- loop.Run(ctx) }()
	defer func() { cancel(); <-ran }() // Run deletes the connections and the socket

	up := make(chan *memif.Conn, 2)
	onUp := func(c *memif.Conn) error { up <- c; return nil }
	master, err := memif.Create(&memif.ConnArgs{Socket: loop.Socket(), IsMaster: true, OnConnect: onUp})
	if err != nil {
		log.Fatal(err)
	}
	slave, err := memif.Create(&memif.ConnArgs{Socket: loop.Socket(), OnConnect: onUp})
	if err != nil {
		log.Fatal(err)
	}
	for range 2 {
		select {
		case <-up:
		case <-time.After(5 * time.Second):
			log.Fatal("no link")
		}
	}

	w, _ := memif.NewTxWriter(slave, 0)
	defer w.Close()
	r, _ := memif.NewRxReader(master, 0, 32)
	defer r.Close()
	r.SetTimeout(5 * time.Second)
	for i := range 3 {
		if err := w.WritePacket(fmt.Appendf(nil, "ping %d", i)); err != nil {
			log.Fatal(err)
		}
	}
	for range 3 {
		p, err := r.Next() // valid until the next call
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(string(p))
	}
	// Output:
	// ping 0
	// ping 1
	// ping 2
}
