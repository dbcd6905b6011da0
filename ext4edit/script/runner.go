package script

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/banger/ext4kit/ext4edit"
)

var (
	// ErrUnknownRequest: the first word of a line names no request.
	ErrUnknownRequest = errors.New("unknown request")
	// ErrUsage: a request got the wrong arguments or options.
	ErrUsage = errors.New("usage")
	// errReadOnly is what a read-only Runner answers to a request that
	// would change the image.
	errReadOnly = fmt.Errorf("%w (use -w)", ext4edit.ErrReadOnly)
	// errUsage is returned by request handlers; exec turns it into an
	// ErrUsage naming the request's synopsis.
	errUsage = errors.New("bad arguments")
)

// Runner executes requests against one image.
type Runner struct {
	Img *ext4edit.Image
	// Stdout receives request output (stat, ls, cat); Stderr notices and
	// errors. Nil discards.
	Stdout, Stderr io.Writer
	// Cwd is the directory relative paths resolve against; "" means "/".
	// The cd request changes it.
	Cwd string
	// Writable allows requests that change the image; without it they
	// fail with an error wrapping ext4edit.ErrReadOnly.
	Writable bool
}

// Result is the outcome of one request.
type Result struct {
	Line    int
	Request string // the request line as written, trimmed
	// Notice is set when the request changed nothing but is not a failure
	// (mkdir of an existing directory, dump -p unable to chown).
	Notice string
	// Err is a *RequestError when the request failed.
	Err error
}

// RequestError is a failed request. Its text names the line, e.g.
// `line 12: write agent /usr/bin/agent: write /usr/bin/agent: file already exists`.
type RequestError struct {
	Line    int
	Request string
	Err     error
}

func (e *RequestError) Error() string {
	return fmt.Sprintf("line %d: %s: %v", e.Line, e.Request, e.Err)
}

func (e *RequestError) Unwrap() error { return e.Err }

// RunLine runs one request line (line number lineNo in its script), prints
// its notice or error on Stderr and returns the error, nil on success or
// for a blank or comment line.
func (r *Runner) RunLine(lineNo int, line string) error {
	res, ok := r.exec(lineNo, line)
	if !ok {
		return nil
	}
	r.report(res)
	return res.Err
}

// Run runs every line of rd in order, keeping going past failures as
// debugfs -f does, and returns one Result per request (blank and comment
// lines have none). Notices and errors are printed on Stderr as they
// happen. The error is a failure to read rd.
func (r *Runner) Run(rd io.Reader) ([]Result, error) {
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var results []Result
	for n := 1; sc.Scan(); n++ {
		res, ok := r.exec(n, sc.Text())
		if !ok {
			continue
		}
		r.report(res)
		results = append(results, res)
	}
	return results, sc.Err()
}

// RunScript is Run that only counts the failed requests.
func (r *Runner) RunScript(rd io.Reader) (failed int, err error) {
	results, err := r.Run(rd)
	for _, res := range results {
		if res.Err != nil {
			failed++
		}
	}
	return failed, err
}

func (r *Runner) report(res Result) {
	switch {
	case res.Err != nil:
		fmt.Fprintln(r.stderr(), res.Err)
	case res.Notice != "":
		fmt.Fprintf(r.stderr(), "line %d: %s: %s\n", res.Line, res.Request, res.Notice)
	}
}

// exec runs one line; ok is false for a blank or comment line.
func (r *Runner) exec(lineNo int, line string) (res Result, ok bool) {
	text := strings.TrimSpace(line)
	if text == "" || text[0] == '#' {
		return Result{}, false
	}
	res = Result{Line: lineNo, Request: text}
	if err := r.dispatch(text); err != nil {
		var n notice
		if errors.As(err, &n) {
			res.Notice = string(n)
		} else {
			res.Err = &RequestError{Line: lineNo, Request: text, Err: err}
		}
	}
	return res, true
}

func (r *Runner) dispatch(text string) error {
	args, err := Parse(text)
	if err != nil {
		return err
	}
	req, ok := requests[args[0]]
	switch {
	case !ok:
		return fmt.Errorf("%w %q", ErrUnknownRequest, args[0])
	case req.writes && !r.Writable:
		return errReadOnly
	case r.Img == nil:
		return errors.New("no image")
	}
	err = req.run(r, args[1:])
	if errors.Is(err, errUsage) {
		return fmt.Errorf("%w: %s %s", ErrUsage, args[0], req.usage)
	}
	return err
}

// abs resolves a path argument against the current directory.
func (r *Runner) abs(name string) string { return join(r.Cwd, name) }

func (r *Runner) stdout() io.Writer { return orDiscard(r.Stdout) }
func (r *Runner) stderr() io.Writer { return orDiscard(r.Stderr) }

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// notice is returned by a request that succeeded with something to say.
type notice string

func (n notice) Error() string { return string(n) }
