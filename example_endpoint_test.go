//go:build linux && cgo

package memif_test

import (
	"context"
	"fmt"
	"log"

	"github.com/memif-go/memif"
)

// An echo master and a slave that sends one packet and prints the echo:
// each handler runs on its own goroutine per queue while the link is up,
// and the views it reads (Rx().Data) stay valid until its next Receive.
func ExampleNewEndpoint() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sock := memif.SocketArgs{Path: "@memif-go-example-endpoint"}

	master, err := memif.NewEndpoint(memif.EndpointConfig{Socket: sock, Conn: memif.ConnArgs{IsMaster: true}},
		func(ctx context.Context, q *memif.Queue) error {
			for {
				n, err := q.Receive(ctx) // parks until packets arrive
				if err != nil {
					return err // the link went down
				}
				for i := range n {
					q.Append(q.Rx().Data(i))
				}
				q.Flush(ctx)
			}
		})
	if err != nil {
		log.Fatal(err)
	}
	defer master.Close()
	go master.Run(ctx)

	echoed := make(chan string, 1)
	slave, err := memif.NewEndpoint(memif.EndpointConfig{Socket: sock},
		func(ctx context.Context, q *memif.Queue) error {
			l := q.Link()
			fmt.Printf("link up: %d queue(s), %d-byte buffers\n", l.RxQueues, l.BufferSize)
			q.Append([]byte("hello over memif"))
			if _, err := q.Flush(ctx); err != nil {
				return err
			}
			if _, err := q.Receive(ctx); err != nil {
				return err
			}
			echoed <- string(q.Rx().Data(0)) // a copy: the view dies with the next Receive
			<-ctx.Done()
			return nil
		})
	if err != nil {
		log.Fatal(err)
	}
	defer slave.Close()
	go slave.Run(ctx)

	fmt.Println(<-echoed)
	// Output:
	// link up: 1 queue(s), 2048-byte buffers
	// hello over memif
}
