package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/banger/ext4kit/imagepull/guestagent"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// testPort is an unlikely port, away from the agent's default.
func testPort() uint32 { return 40000 + uint32(os.Getpid()%20000) }

func TestNoVsockExitsNonZero(t *testing.T) {
	old := socket
	defer func() { socket = old }()
	socket = func(domain, typ, proto int) (int, error) {
		require.Equal(t, unix.AF_VSOCK, domain)
		return -1, unix.EAFNOSUPPORT
	}
	var stderr bytes.Buffer
	require.Equal(t, 1, run(context.Background(), nil, &stderr))
	require.Equal(t, "banger-vsock-agent: vsock unavailable: socket(AF_VSOCK): address family not supported by protocol "+
		"(does the VM have a virtio-vsock device, and is vmw_vsock_virtio_transport loaded?)\n", stderr.String())
}

// TestVsock listens on AF_VSOCK for real. Where the kernel has no vsock
// transport the agent must fail with a clear message; where it has one,
// the log line must name the port, and where a loopback transport exists
// (vsock_loopback) the protocol is exercised over it.
func TestVsock(t *testing.T) {
	port := testPort()
	l, err := listenVsock(port)
	if err != nil {
		var stderr bytes.Buffer
		require.Equal(t, 1, run(context.Background(), []string{"-port", fmt.Sprint(port)}, &stderr))
		require.Contains(t, stderr.String(), "banger-vsock-agent: vsock unavailable: socket(AF_VSOCK)")
		t.Skipf("AF_VSOCK unavailable here (%v): checked the failure message only", err)
	}
	require.Equal(t, "vsock", l.Addr().Network())
	require.Equal(t, fmt.Sprint(port), portOf(l.Addr()))

	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuffer
	code := make(chan int, 1)
	go func() { code <- serve(ctx, l, time.Minute, &stderr) }()
	defer func() {
		cancel()
		require.Equal(t, 0, <-code)
		require.True(t, strings.HasPrefix(stderr.String(), fmt.Sprintf("banger-vsock-agent: listening on vsock port %d\n", port)), stderr.String())
	}()

	// A second listener on the same port fails with a clear message.
	_, err = listenVsock(port)
	require.ErrorContains(t, err, fmt.Sprintf("vsock port %d: bind", port))

	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	tv := unix.Timeval{Sec: 1}
	_ = unix.SetsockoptTimeval(fd, unix.AF_VSOCK, unix.SO_VM_SOCKETS_CONNECT_TIMEOUT, &tv)
	if err := unix.Connect(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_LOCAL, Port: port}); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.ETIMEDOUT) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.EHOSTUNREACH) || errors.Is(err, unix.ENETUNREACH) {
			t.Logf("no vsock loopback transport (%v): listened only", err)
			return
		}
		require.NoError(t, err)
	}
	cl := guestagent.NewClient(os.NewFile(uintptr(fd), "vsock-client"))
	defer cl.Close()
	require.NoError(t, cl.Ping())
	info, err := cl.Info()
	require.NoError(t, err)
	require.NotEmpty(t, info.Kernel)
}
