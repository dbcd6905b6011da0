package script

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/banger/ext4kit/ext4edit"
)

func TestParseArgs(t *testing.T) {
	tests := []struct {
		line    string
		want    []string
		wantErr bool
	}{
		{line: "", want: nil},
		{line: " \t ", want: nil},
		{line: "mkdir /usr", want: []string{"mkdir", "/usr"}},
		{line: "  write  a\tb  ", want: []string{"write", "a", "b"}},
		{line: `write "my file" /x`, want: []string{"write", "my file", "/x"}},
		{line: `a"b c"d`, want: []string{"ab cd"}},
		{line: `mkdir "a""b"`, want: []string{"mkdir", `a"b`}},
		{line: `""`, want: []string{""}},
		{line: `x "" y`, want: []string{"x", "", "y"}},
		{line: `x """"`, want: []string{"x", `"`}},
		{line: `back\ slash`, want: []string{`back\`, "slash"}},
		{line: "trailing\r", want: []string{"trailing"}},
		{line: `"unterminated`, wantErr: true},
		{line: `x """`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			got, err := Parse(tt.line)
			if tt.wantErr {
				require.ErrorIs(t, err, ErrUnbalancedQuotes)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestParseUint(t *testing.T) {
	tests := []struct {
		in      string
		bits    int
		want    uint64
		wantErr string
	}{
		{in: "0", bits: 32, want: 0},
		{in: "10", bits: 32, want: 10},
		{in: "0x1F", bits: 32, want: 31},
		{in: "0X1f", bits: 32, want: 31},
		{in: "010", bits: 32, want: 8},
		{in: "0100755", bits: 16, want: 0o100755},
		{in: "4294967295", bits: 32, want: 1<<32 - 1},
		{in: "65536", bits: 16, wantErr: "exceeds maximum 65535"},
		{in: "08", bits: 32, wantErr: "couldn't parse"},
		{in: "0x", bits: 32, wantErr: "couldn't parse"},
		{in: "-1", bits: 32, wantErr: "couldn't parse"},
		{in: "+1", bits: 32, wantErr: "couldn't parse"},
		{in: "1_000", bits: 32, wantErr: "couldn't parse"},
		{in: "0b1", bits: 32, wantErr: "couldn't parse"},
		{in: " 1", bits: 32, wantErr: "couldn't parse"},
		{in: "12abc", bits: 32, wantErr: "couldn't parse"},
		{in: "", bits: 32, wantErr: "couldn't parse"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseUint(tt.in, tt.bits)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestParseTime(t *testing.T) {
	fixed := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	clock := func() time.Time { return fixed }
	tests := []struct {
		in      string
		want    time.Time
		wantErr bool
	}{
		{in: "now", want: fixed},
		{in: "@1700000000", want: time.Unix(1700000000, 0)},
		{in: "@0x10", want: time.Unix(16, 0)},
		{in: "@-1", want: time.Unix(-1, 0)},
		// Not a date (month 00), so seconds, as debugfs reads it.
		{in: "1700000000", want: time.Unix(1700000000, 0)},
		{in: "0x10", want: time.Unix(16, 0)},
		{in: "20230102030405", want: time.Date(2023, 1, 2, 3, 4, 5, 0, time.UTC)},
		{in: "202301020304", want: time.Date(2023, 1, 2, 3, 4, 0, 0, time.UTC)},
		// glibc strptime lets %S take a single digit; debugfs 1.47 agrees.
		{in: "2023010203040", want: time.Date(2023, 1, 2, 3, 4, 0, 0, time.UTC)},
		{in: "20231231235959", want: time.Date(2023, 12, 31, 23, 59, 59, 0, time.UTC)},
		// Month 13 is no date, so the digits are seconds.
		{in: "20231301000000", want: time.Unix(20231301000000, 0)},
		{in: "20230102030405Z", wantErr: true},
		{in: "bogus", wantErr: true},
		{in: "@", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseTime(tt.in, clock)
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.True(t, tt.want.Equal(got), "got %v, want %v", got, tt.want)
		})
	}
}

func TestParsePathJoin(t *testing.T) {
	tests := []struct {
		cwd, name, want string
	}{
		{"/", "usr", "/usr"},
		{"", "usr", "/usr"},
		{"/usr", "local/bin", "/usr/local/bin"},
		{"/usr", "/etc", "/etc"},
		{"/usr/local", "..", "/usr"},
		{"/", "..", "/"},
		{"/", "../../etc", "/etc"},
		{"/a", "./b/../c/", "/a/c"},
		{"/a", "", "/a"},
		{"/a", ".", "/a"},
		{"/a", "//x//y/", "/x/y"},
		{"usr", "bin", "/usr/bin"},
	}
	for _, tt := range tests {
		t.Run(tt.cwd+"+"+tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, join(tt.cwd, tt.name))
		})
	}
}

func TestParseSetField(t *testing.T) {
	u16 := func(v uint16) *uint16 { return &v }
	u32 := func(v uint32) *uint32 { return &v }
	tm := func(sec int64) *time.Time { v := time.Unix(sec, 0).UTC(); return &v }
	tests := []struct {
		field, value string
		want         ext4edit.Attr
		wantErr      string
	}{
		{field: "uid", value: "0", want: ext4edit.Attr{UID: u32(0)}},
		{field: "i_gid", value: "010", want: ext4edit.Attr{GID: u32(8)}},
		{field: "mode", value: "0100755", want: ext4edit.Attr{Mode: u16(0o100755)}},
		{field: "links_count", value: "2", want: ext4edit.Attr{LinksCount: u16(2)}},
		{field: "generation", value: "0xdeadbeef", want: ext4edit.Attr{Generation: u32(0xdeadbeef)}},
		{field: "flags", value: "0x80000", want: ext4edit.Attr{Flags: u32(0x80000)}},
		{field: "mtime", value: "@5", want: ext4edit.Attr{Mtime: tm(5)}},
		{field: "atime", value: "19700101000010", want: ext4edit.Attr{Atime: tm(10)}},
		{field: "ctime", value: "7", want: ext4edit.Attr{Ctime: tm(7)}},
		{field: "crtime", value: "@8", want: ext4edit.Attr{Crtime: tm(8)}},
		{field: "links_count", value: "70000", wantErr: "field links_count: value \"70000\" exceeds maximum 65535"},
		{field: "uid", value: "bogus", wantErr: "field uid: couldn't parse"},
		{field: "mtime", value: "bogus", wantErr: "field mtime: couldn't parse"},
		{field: "nosuch", value: "1", wantErr: "invalid field specifier: nosuch"},
		{field: "size", value: "1", wantErr: "invalid field specifier: size"},
	}
	for _, tt := range tests {
		t.Run(tt.field+"="+tt.value, func(t *testing.T) {
			var got ext4edit.Attr
			err := setField(&got, tt.field, tt.value)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestParseOptions(t *testing.T) {
	tests := []struct {
		args     []string
		allowed  string
		opts     string
		rest     []string
		wantFail bool
	}{
		{args: []string{"/x"}, allowed: "p", opts: "", rest: []string{"/x"}},
		{args: []string{"-p", "/x"}, allowed: "p", opts: "p", rest: []string{"/x"}},
		{args: []string{"-lp"}, allowed: "lp", opts: "lp", rest: []string{}},
		{args: []string{"-l", "-p", "d"}, allowed: "lp", opts: "lp", rest: []string{"d"}},
		{args: []string{"--", "-p"}, allowed: "p", opts: "", rest: []string{"-p"}},
		{args: []string{"-", "x"}, allowed: "p", opts: "", rest: []string{"-", "x"}},
		{args: []string{"-x", "/x"}, allowed: "p", wantFail: true},
	}
	for _, tt := range tests {
		opts, rest, err := getopt(tt.args, tt.allowed)
		if tt.wantFail {
			require.ErrorIs(t, err, errUsage, "%q", tt.args)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, tt.opts, opts, "%q", tt.args)
		require.Equal(t, tt.rest, rest, "%q", tt.args)
	}
}
