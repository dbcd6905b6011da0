// Command banger-vsock-agent runs inside a banger microVM guest and answers
// the host over AF_VSOCK with line-delimited JSON (package
// github.com/banger/ext4kit/imagepull/guestagent: ping, info).
//
//	banger-vsock-agent [-port N]
//
// It listens on every CID at port N (default guestagent.DefaultPort) and
// logs "banger-vsock-agent: listening on vsock port N" to standard error.
// Where AF_VSOCK is unavailable (no virtio-vsock device or module, or not
// Linux) it exits with status 1 and says why. SIGTERM and SIGINT stop it
// with status 0. banger-vsock-agent.service starts it at boot.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/banger/ext4kit/imagepull/guestagent"
)

const name = "banger-vsock-agent"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stderr))
}

func run(ctx context.Context, args []string, stderr io.Writer) int {
	fl := flag.NewFlagSet(name, flag.ContinueOnError)
	fl.SetOutput(stderr)
	port := fl.Uint("port", guestagent.DefaultPort, "AF_VSOCK `port` to listen on")
	idle := fl.Duration("idle-timeout", 10*time.Minute, "close a connection idle this long (0: never)")
	if err := fl.Parse(args); err != nil {
		return 2
	}
	if fl.NArg() != 0 || *port == 0 || *port > 0xFFFFFFFE {
		fmt.Fprintf(stderr, "usage: %s [-port N] (N in 1..4294967294)\n", name)
		return 2
	}
	l, err := listenVsock(uint32(*port))
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	return serve(ctx, l, *idle, stderr)
}

// serve answers on l until ctx ends (status 0) or l fails (status 1).
func serve(ctx context.Context, l net.Listener, idle time.Duration, stderr io.Writer) int {
	logger := log.New(stderr, name+": ", 0)
	logger.Printf("listening on %s", describe(l.Addr()))
	srv := &guestagent.Server{IdleTimeout: idle, Logf: logger.Printf}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	select {
	case <-ctx.Done():
		srv.Close()
		<-done
		logger.Printf("stopped")
		return 0
	case err := <-done:
		srv.Close()
		if errors.Is(err, guestagent.ErrServerClosed) {
			return 0
		}
		logger.Printf("accept: %v", err)
		return 1
	}
}

// describe names a listening address for the log line.
func describe(a net.Addr) string {
	if a.Network() == "vsock" {
		return "vsock port " + portOf(a)
	}
	return a.Network() + " " + a.String()
}
