// Package guestagent is the protocol banger-vsock-agent speaks: line-
// delimited JSON over a stream connection (AF_VSOCK in the guest, any
// net.Listener in tests). Each request is one JSON object on one line; the
// agent answers each with one JSON object on one line, in order.
//
//	{"op":"ping"}  ->  {"ok":true,"op":"pong"}
//	{"op":"info"}  ->  {"ok":true,"op":"info","hostname":"vm1","kernel":"6.1.0-18-amd64",
//	                    "uptime_seconds":12.5,"addresses":[{"iface":"eth0","address":"172.16.0.2/30"}]}
//	{"op":"nope"}  ->  {"ok":false,"error":"unknown op \"nope\" (known: info, ping)"}
//
// A request may carry "id" (any JSON value); the response echoes it. A
// line that is not a JSON object gets {"ok":false,"error":"bad request: ..."}
// and the connection stays usable; a line longer than MaxLine bytes ends
// the connection after an error response.
package guestagent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"time"
)

// DefaultPort is the AF_VSOCK port the agent listens on unless told
// otherwise (-port).
const DefaultPort = 10789

// MaxLine bounds one request line.
const MaxLine = 64 << 10

// Request is one request line.
type Request struct {
	Op string          `json:"op"`
	ID json.RawMessage `json:"id,omitempty"`
}

// Response is one response line. Fields other than OK, Op, Error and ID
// are set by the op that fills them.
type Response struct {
	OK    bool            `json:"ok"`
	Op    string          `json:"op,omitempty"`
	Error string          `json:"error,omitempty"`
	ID    json.RawMessage `json:"id,omitempty"`
	*Info
}

// Info is what the info op reports.
type Info struct {
	Hostname      string    `json:"hostname"`
	Kernel        string    `json:"kernel"`         // uname release
	UptimeSeconds float64   `json:"uptime_seconds"` // from /proc/uptime
	Addresses     []Address `json:"addresses"`
}

// Address is one interface address in CIDR form.
type Address struct {
	Iface   string `json:"iface"`
	Address string `json:"address"`
}

// Server answers requests on every connection a listener accepts.
type Server struct {
	// Info gathers what the info op reports; nil means SystemInfo.
	Info func() (*Info, error)
	// IdleTimeout closes a connection that sends nothing for that long;
	// zero means never.
	IdleTimeout time.Duration
	// Logf, when set, receives connection-level problems.
	Logf func(format string, args ...any)

	mu        sync.Mutex
	conns     map[net.Conn]struct{}
	listeners map[net.Listener]struct{}
	closed    bool
	wg        sync.WaitGroup
}

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("guestagent: server closed")

// Serve accepts connections on l and answers each in its own goroutine
// until l fails or the server is closed. It closes l on return.
func (s *Server) Serve(l net.Listener) error {
	defer l.Close()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	if s.conns == nil {
		s.conns = map[net.Conn]struct{}{}
		s.listeners = map[net.Listener]struct{}{}
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.logf("accept: %v; retrying in %v", err, backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return ErrServerClosed
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.ServeConn(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// Close stops every Serve (closing its listener) and closes every open
// connection, waiting for their handlers to finish.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func (s *Server) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

// ServeConn answers the requests on one connection until it ends, then
// closes it.
func (s *Server) ServeConn(c io.ReadWriteCloser) {
	defer c.Close()
	dl, _ := c.(interface{ SetReadDeadline(time.Time) error })
	r := bufio.NewReaderSize(c, 4096)
	w := bufio.NewWriter(c)
	for {
		if s.IdleTimeout > 0 && dl != nil {
			_ = dl.SetReadDeadline(time.Now().Add(s.IdleTimeout))
		}
		line, tooLong, err := readLine(r, MaxLine)
		if tooLong {
			_ = writeResponse(w, Response{Error: fmt.Sprintf("bad request: line longer than %d bytes", MaxLine)})
			return
		}
		if len(bytes.TrimSpace(line)) > 0 {
			if werr := writeResponse(w, s.Handle(line)); werr != nil {
				s.logf("write: %v", werr)
				return
			}
		}
		if err != nil {
			if err != io.EOF && !errors.Is(err, net.ErrClosed) {
				s.logf("read: %v", err)
			}
			return
		}
	}
}

// readLine reads up to and excluding '\n'. tooLong reports a line over
// limit (the rest is not consumed).
func readLine(r *bufio.Reader, limit int) (line []byte, tooLong bool, err error) {
	for {
		frag, err := r.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > limit+1 {
			return nil, true, nil
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		return bytes.TrimSuffix(line, []byte("\n")), false, err
	}
}

func writeResponse(w *bufio.Writer, resp Response) error {
	b, err := json.Marshal(resp)
	if err != nil {
		b, _ = json.Marshal(Response{Error: "internal error: " + err.Error(), ID: resp.ID})
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		return err
	}
	return w.Flush()
}

// ops are the known operations.
var ops = map[string]func(s *Server) Response{
	"ping": func(*Server) Response { return Response{OK: true, Op: "pong"} },
	"info": func(s *Server) Response {
		get := s.Info
		if get == nil {
			get = SystemInfo
		}
		info, err := get()
		if err != nil {
			return Response{Error: "info: " + err.Error()}
		}
		return Response{OK: true, Op: "info", Info: info}
	},
}

func opNames() string {
	var names []string
	for n := range ops {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// Handle answers one request line.
func (s *Server) Handle(line []byte) Response {
	var req Request
	dec := json.NewDecoder(bytes.NewReader(line))
	if err := dec.Decode(&req); err != nil {
		return Response{Error: "bad request: " + err.Error()}
	}
	if dec.More() {
		return Response{Error: "bad request: more than one JSON value on the line"}
	}
	var resp Response
	switch fn, ok := ops[req.Op]; {
	case req.Op == "":
		resp = Response{Error: `bad request: missing "op"`}
	case !ok:
		resp = Response{Error: fmt.Sprintf("unknown op %q (known: %s)", req.Op, opNames())}
	default:
		resp = fn(s)
	}
	resp.ID = req.ID
	return resp
}

// Client talks to an agent over one connection. It is safe for
// concurrent use; calls are serialized.
type Client struct {
	mu sync.Mutex
	c  io.ReadWriteCloser
	r  *bufio.Reader
}

// NewClient wraps an established connection (for Firecracker's hybrid
// vsock, after the "CONNECT port" handshake).
func NewClient(c io.ReadWriteCloser) *Client {
	return &Client{c: c, r: bufio.NewReader(c)}
}

// Close closes the connection.
func (c *Client) Close() error { return c.c.Close() }

// Call sends a request for op and returns the response; a response with
// ok false is returned together with an error carrying its message.
func (c *Client) Call(op string) (*Response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, err := json.Marshal(Request{Op: op})
	if err != nil {
		return nil, err
	}
	if _, err := c.c.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("guestagent: send %s: %w", op, err)
	}
	line, tooLong, err := readLine(c.r, 16*MaxLine)
	if tooLong {
		return nil, fmt.Errorf("guestagent: %s: response too long", op)
	}
	if err != nil && (err != io.EOF || len(line) == 0) {
		return nil, fmt.Errorf("guestagent: read %s response: %w", op, err)
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return nil, fmt.Errorf("guestagent: %s: bad response %q: %w", op, line, err)
	}
	if !resp.OK {
		return &resp, fmt.Errorf("guestagent: %s: %s", op, resp.Error)
	}
	return &resp, nil
}

// Ping checks the agent answers.
func (c *Client) Ping() error {
	resp, err := c.Call("ping")
	if err != nil {
		return err
	}
	if resp.Op != "pong" {
		return fmt.Errorf("guestagent: ping answered with op %q", resp.Op)
	}
	return nil
}

// Info asks for the guest's info.
func (c *Client) Info() (*Info, error) {
	resp, err := c.Call("info")
	if err != nil {
		return nil, err
	}
	if resp.Info == nil {
		return nil, fmt.Errorf("guestagent: info response without info")
	}
	return resp.Info, nil
}
