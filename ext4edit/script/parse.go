package script

import (
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"
)

// ErrUnbalancedQuotes is returned by Parse for a line whose double quotes do
// not pair up.
var ErrUnbalancedQuotes = errors.New("unbalanced quotes in command line")

// Parse splits a request line into words exactly as debugfs's ss library
// does: words are separated by spaces and tabs (and CR or LF, which
// debugfs strips before parsing); a double quote anywhere in a
// word starts a quoted stretch in which blanks are literal, and inside a
// quoted stretch "" stands for one literal quote. There are no backslash
// escapes. A blank line yields no words.
func Parse(line string) ([]string, error) {
	var (
		args   []string
		word   []byte
		inWord bool
		quoted bool
	)
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quoted:
			switch {
			case c != '"':
				word = append(word, c)
			case i+1 < len(line) && line[i+1] == '"':
				word = append(word, '"')
				i++
			default:
				quoted = false
			}
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			if inWord {
				args = append(args, string(word))
				word, inWord = word[:0], false
			}
		case c == '"':
			inWord, quoted = true, true
		default:
			inWord = true
			word = append(word, c)
		}
	}
	if quoted {
		return nil, ErrUnbalancedQuotes
	}
	if inWord {
		args = append(args, string(word))
	}
	return args, nil
}

// join resolves name against the directory cwd the way every request sees
// its path arguments: absolute when name starts with "/", else relative to
// cwd; the result is cleaned lexically ("a/../b" is "b" even where "a" is a
// symlink, unlike debugfs, which follows the on-disk "..").
func join(cwd, name string) string {
	if path.IsAbs(name) {
		return path.Clean(name)
	}
	return path.Join("/", cwd, name)
}

// parseUint parses a number as C's strtoul with base 0 does (debugfs's
// parse_uint): "0x" or "0X" prefix for hex, a leading 0 for octal, else
// decimal, and checks that it fits in bits. Signs, blanks and trailing
// characters are rejected.
func parseUint(s string, bits int) (uint64, error) {
	base, digits := 10, s
	switch {
	case len(s) > 1 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'):
		base, digits = 16, s[2:]
	case len(s) > 1 && s[0] == '0':
		base, digits = 8, s[1:]
	}
	if digits == "" || digits[0] == '+' || digits[0] == '-' {
		return 0, fmt.Errorf("couldn't parse %q as a number", s)
	}
	v, err := strconv.ParseUint(digits, base, bits)
	if errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("value %q exceeds maximum %d", s, uint64(1)<<bits-1)
	}
	if err != nil {
		return 0, fmt.Errorf("couldn't parse %q as a number", s)
	}
	return v, nil
}

// parseSeconds parses a signed number as C's strtoll with base 0 does.
func parseSeconds(s string) (int64, error) {
	neg := strings.HasPrefix(s, "-")
	digits := strings.TrimPrefix(s, "-")
	if digits == "" || digits[0] == '-' {
		return 0, fmt.Errorf("couldn't parse %q as seconds", s)
	}
	u, err := parseUint(digits, 63)
	if err != nil {
		return 0, fmt.Errorf("couldn't parse %q as seconds", s)
	}
	if neg {
		return -int64(u), nil
	}
	return int64(u), nil
}

// parseTime parses a time value as debugfs's string_to_time does: "now";
// "@SECONDS"; a UTC date YYYYMMDDHHMMSS or YYYYMMDDHHMM (read with glibc
// strptime's digit rules, so "2023010203040" is 2023-01-02 03:04:00); else
// a plain number of seconds since the epoch (strtoll base 0). Unlike
// debugfs, trailing characters after a date are rejected.
func parseTime(s string, now func() time.Time) (time.Time, error) {
	switch {
	case s == "now":
		return now(), nil
	case strings.HasPrefix(s, "@"):
		sec, err := parseSeconds(s[1:])
		if err != nil {
			return time.Time{}, err
		}
		return time.Unix(sec, 0).UTC(), nil
	}
	if t, ok := parseDate(s, true); ok {
		return t, nil
	}
	if t, ok := parseDate(s, false); ok {
		return t, nil
	}
	sec, err := parseSeconds(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("couldn't parse %q as a time (want now, @SECONDS, YYYYMMDDHHMM[SS] or SECONDS)", s)
	}
	return time.Unix(sec, 0).UTC(), nil
}

// parseDate reads "%Y%m%d%H%M%S" (or "%Y%m%d%H%M" without seconds) the way
// glibc's strptime does: each field takes up to its width in digits but
// stops early once another digit would overflow the field's maximum, and
// out-of-range fields fail. The whole string must be consumed.
func parseDate(s string, withSeconds bool) (time.Time, bool) {
	p := 0
	field := func(lo, hi, width int) (int, bool) {
		for p < len(s) && s[p] == ' ' {
			p++
		}
		if p >= len(s) || s[p] < '0' || s[p] > '9' {
			return 0, false
		}
		v := 0
		for {
			v = v*10 + int(s[p]-'0')
			p++
			width--
			if width == 0 || v*10 > hi || p >= len(s) || s[p] < '0' || s[p] > '9' {
				break
			}
		}
		return v, v >= lo && v <= hi
	}
	specs := [][3]int{{0, 9999, 4}, {1, 12, 2}, {1, 31, 2}, {0, 23, 2}, {0, 59, 2}, {0, 61, 2}}
	if !withSeconds {
		specs = specs[:5]
	}
	var v [6]int
	for i, sp := range specs {
		n, ok := field(sp[0], sp[1], sp[2])
		if !ok {
			return time.Time{}, false
		}
		v[i] = n
	}
	if p != len(s) {
		return time.Time{}, false
	}
	return time.Date(v[0], time.Month(v[1]), v[2], v[3], v[4], v[5], 0, time.UTC), true
}
