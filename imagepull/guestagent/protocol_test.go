package guestagent

import (
	"bufio"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var fixedInfo = &Info{
	Hostname:      "vm-1",
	Kernel:        "6.1.0-18-amd64",
	UptimeSeconds: 12.5,
	Addresses:     []Address{{Iface: "lo", Address: "127.0.0.1/8"}, {Iface: "eth0", Address: "172.16.0.2/30"}},
}

func fixed() (*Info, error) { return fixedInfo, nil }

// serveUnix starts a server on a unix socket and returns its path.
func serveUnix(t *testing.T, s *Server) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Skipf("unix sockets unavailable: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		require.NoError(t, s.Close())
		require.ErrorIs(t, <-done, ErrServerClosed)
	})
	return sock
}

// exchange sends raw lines and returns the raw response lines.
func exchange(t *testing.T, c net.Conn, lines string, n int) []string {
	t.Helper()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	_, err := c.Write([]byte(lines))
	require.NoError(t, err)
	r := bufio.NewReader(c)
	var out []string
	for i := 0; i < n; i++ {
		l, err := r.ReadString('\n')
		require.NoError(t, err, "response %d", i)
		out = append(out, strings.TrimSuffix(l, "\n"))
	}
	return out
}

func TestProtocolOverUnixSocket(t *testing.T) {
	sock := serveUnix(t, &Server{Info: fixed})
	wantInfo := `{"ok":true,"op":"info","hostname":"vm-1","kernel":"6.1.0-18-amd64","uptime_seconds":12.5,` +
		`"addresses":[{"iface":"lo","address":"127.0.0.1/8"},{"iface":"eth0","address":"172.16.0.2/30"}]}`
	for _, tc := range []struct {
		name, req, want string
	}{
		{"ping", `{"op":"ping"}`, `{"ok":true,"op":"pong"}`},
		{"ping with id", `{"op":"ping","id":42}`, `{"ok":true,"op":"pong","id":42}`},
		{"string id", ` {"id":"a-1", "op":"ping"} `, `{"ok":true,"op":"pong","id":"a-1"}`},
		{"info", `{"op":"info"}`, wantInfo},
		{"unknown op", `{"op":"reboot"}`, `{"ok":false,"error":"unknown op \"reboot\" (known: info, ping)"}`},
		{"missing op", `{}`, `{"ok":false,"error":"bad request: missing \"op\""}`},
		{"not json", `ping`, `{"ok":false,"error":"bad request: invalid character 'p' looking for beginning of value"}`},
		{"two values", `{"op":"ping"}{"op":"ping"}`, `{"ok":false,"error":"bad request: more than one JSON value on the line"}`},
		{"wrong type", `{"op":1}`, `{"ok":false,"error":"bad request: json: cannot unmarshal number into Go struct field Request.op of type string"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("unix", sock)
			require.NoError(t, err)
			defer c.Close()
			got := exchange(t, c, tc.req+"\n", 1)
			require.JSONEq(t, tc.want, got[0])
			// The connection stays usable after any answer.
			require.JSONEq(t, `{"ok":true,"op":"pong"}`, exchange(t, c, `{"op":"ping"}`+"\n", 1)[0])
		})
	}
}

func TestProtocolPipelinedAndBlankLines(t *testing.T) {
	sock := serveUnix(t, &Server{Info: fixed})
	c, err := net.Dial("unix", sock)
	require.NoError(t, err)
	defer c.Close()
	got := exchange(t, c, "{\"op\":\"ping\",\"id\":1}\n\n  \r\n{\"op\":\"nope\",\"id\":2}\r\n{\"op\":\"ping\",\"id\":3}\n", 3)
	for i, want := range []string{`{"ok":true,"op":"pong","id":1}`, `{"ok":false,"error":"unknown op \"nope\" (known: info, ping)","id":2}`, `{"ok":true,"op":"pong","id":3}`} {
		require.JSONEq(t, want, got[i])
	}
}

func TestProtocolLastLineWithoutNewline(t *testing.T) {
	sock := serveUnix(t, &Server{Info: fixed})
	c, err := net.Dial("unix", sock)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte(`{"op":"ping"}`))
	require.NoError(t, err)
	require.NoError(t, c.(*net.UnixConn).CloseWrite())
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	l, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	require.JSONEq(t, `{"ok":true,"op":"pong"}`, l)
}

func TestProtocolLineTooLong(t *testing.T) {
	sock := serveUnix(t, &Server{Info: fixed})
	c, err := net.Dial("unix", sock)
	require.NoError(t, err)
	defer c.Close()
	go func() { _, _ = c.Write([]byte(`{"op":"` + strings.Repeat("x", MaxLine+10) + "\"}\n")) }()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	r := bufio.NewReader(c)
	l, err := r.ReadString('\n')
	require.NoError(t, err)
	require.JSONEq(t, `{"ok":false,"error":"bad request: line longer than 65536 bytes"}`, l)
	_, err = r.ReadString('\n')
	require.Error(t, err, "the connection is closed after an oversized line")
}

func TestProtocolInfoError(t *testing.T) {
	sock := serveUnix(t, &Server{Info: func() (*Info, error) { return nil, errors.New("no /proc") }})
	c, err := net.Dial("unix", sock)
	require.NoError(t, err)
	defer c.Close()
	require.JSONEq(t, `{"ok":false,"error":"info: no /proc"}`, exchange(t, c, `{"op":"info"}`+"\n", 1)[0])
}

func TestIdleTimeout(t *testing.T) {
	sock := serveUnix(t, &Server{Info: fixed, IdleTimeout: 50 * time.Millisecond})
	c, err := net.Dial("unix", sock)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = bufio.NewReader(c).ReadString('\n')
	require.Error(t, err, "the server hangs up an idle connection")
}

func TestClientOverUnixSocket(t *testing.T) {
	sock := serveUnix(t, &Server{Info: fixed})
	c, err := net.Dial("unix", sock)
	require.NoError(t, err)
	cl := NewClient(c)
	defer cl.Close()
	require.NoError(t, cl.Ping())
	info, err := cl.Info()
	require.NoError(t, err)
	require.Equal(t, fixedInfo, info)
	resp, err := cl.Call("bogus")
	require.ErrorContains(t, err, `unknown op "bogus"`)
	require.False(t, resp.OK)
}

func TestConcurrentConnections(t *testing.T) {
	sock := serveUnix(t, &Server{Info: fixed})
	errs := make(chan error, 16)
	for i := 0; i < cap(errs); i++ {
		go func() {
			c, err := net.Dial("unix", sock)
			if err != nil {
				errs <- err
				return
			}
			cl := NewClient(c)
			defer cl.Close()
			for j := 0; j < 20; j++ {
				if err := cl.Ping(); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for i := 0; i < cap(errs); i++ {
		require.NoError(t, <-errs)
	}
}

func TestServeConnOverPipe(t *testing.T) {
	server, client := net.Pipe()
	s := &Server{Info: fixed}
	done := make(chan struct{})
	go func() { s.ServeConn(server); close(done) }()
	cl := NewClient(client)
	require.NoError(t, cl.Ping())
	info, err := cl.Info()
	require.NoError(t, err)
	require.Equal(t, "vm-1", info.Hostname)
	require.NoError(t, cl.Close())
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("ServeConn did not return after the client hung up")
	}
}

func TestCloseEndsOpenConnections(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Skipf("unix sockets unavailable: %v", err)
	}
	s := &Server{Info: fixed}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	c, err := net.Dial("unix", sock)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, NewClient(c).Ping())
	require.NoError(t, s.Close())
	require.ErrorIs(t, <-done, ErrServerClosed)
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = c.Read(make([]byte, 1))
	require.Error(t, err)
}

func TestSystemInfo(t *testing.T) {
	info, err := SystemInfo()
	require.NoError(t, err)
	host, _ := os.Hostname()
	require.Equal(t, host, info.Hostname)
	require.NotNil(t, info.Addresses)
	if _, err := os.Stat("/proc/uptime"); err == nil {
		require.Greater(t, info.UptimeSeconds, 0.0)
		require.NotEmpty(t, info.Kernel)
		for _, a := range info.Addresses {
			_, _, err := net.ParseCIDR(a.Address)
			require.NoError(t, err, "%s %s", a.Iface, a.Address)
		}
	}
	b, err := json.Marshal(Response{OK: true, Op: "info", Info: info})
	require.NoError(t, err)
	require.Contains(t, string(b), `"uptime_seconds":`)
}

func TestParseUptime(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
		err  bool
	}{
		{"350735.47 234388.90\n", 350735.47, false},
		{"12 3", 12, false},
		{"", 0, true},
		{"abc 1", 0, true},
	} {
		got, err := parseUptime(tc.in)
		if tc.err {
			require.Error(t, err, tc.in)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, tc.want, got)
	}
}
