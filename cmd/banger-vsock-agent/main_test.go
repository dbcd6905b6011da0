package main

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/banger/ext4kit/imagepull/guestagent"
	"github.com/stretchr/testify/require"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{{"-port", "0"}, {"extra"}, {"-port", "x"}, {"-port", "4294967295"}} {
		var stderr bytes.Buffer
		require.Equal(t, 2, run(context.Background(), args, &stderr), "%v", args)
		require.NotEmpty(t, stderr.String())
	}
}

// TestServeOverUnixSocket runs the agent's serve loop on a unix listener:
// the protocol end to end, the log line, and a clean stop.
func TestServeOverUnixSocket(t *testing.T) {
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "agent.sock"))
	if err != nil {
		t.Skipf("unix sockets unavailable: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuffer
	code := make(chan int, 1)
	go func() { code <- serve(ctx, l, time.Minute, &stderr) }()
	c, err := net.Dial("unix", l.Addr().String())
	require.NoError(t, err)
	cl := guestagent.NewClient(c)
	require.NoError(t, cl.Ping())
	info, err := cl.Info()
	require.NoError(t, err)
	require.NotEmpty(t, info.Hostname)
	cancel()
	select {
	case got := <-code:
		require.Equal(t, 0, got)
	case <-time.After(5 * time.Second):
		t.Fatal("serve did not stop")
	}
	require.True(t, strings.HasPrefix(stderr.String(), "banger-vsock-agent: listening on unix "), stderr.String())
	require.Contains(t, stderr.String(), "banger-vsock-agent: stopped")
}

// TestListenerFailureExitsNonZero: a listener that dies makes the agent
// exit 1 (systemd restarts it).
func TestListenerFailureExitsNonZero(t *testing.T) {
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "agent.sock"))
	if err != nil {
		t.Skipf("unix sockets unavailable: %v", err)
	}
	var stderr syncBuffer
	code := make(chan int, 1)
	go func() { code <- serve(context.Background(), l, 0, &stderr) }()
	time.Sleep(20 * time.Millisecond)
	l.Close()
	select {
	case got := <-code:
		require.Equal(t, 1, got)
	case <-time.After(5 * time.Second):
		t.Fatal("serve did not return")
	}
	require.Contains(t, stderr.String(), "banger-vsock-agent: accept:")
}
