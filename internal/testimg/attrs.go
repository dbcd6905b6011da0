package testimg

import (
	"encoding/hex"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// DebugfsExists reports whether path names an inode in img, as debugfs's
// stat request sees it (not following a final symlink).
func DebugfsExists(t testing.TB, img, path string) bool {
	t.Helper()
	out, errOut := DebugfsOutErr(t, img, fmt.Sprintf("stat %q", path))
	if strings.Contains(errOut, "File not found") || strings.Contains(errOut, "not a directory") {
		return false
	}
	if errOut != "" && !strings.Contains(out, "Inode:") {
		t.Fatalf("debugfs stat %s: %s", path, errOut)
	}
	return true
}

var reEAName = regexp.MustCompile(`^\s+(\S+) \((\d+)\)`)

// DebugfsXattrNames lists the extended attribute names debugfs's ea_list
// request shows for path.
func DebugfsXattrNames(t testing.TB, img, path string) []string {
	t.Helper()
	out, errOut := DebugfsOutErr(t, img, fmt.Sprintf("ea_list %q", path))
	if errOut != "" {
		t.Fatalf("debugfs ea_list %s: %s", path, errOut)
	}
	var names []string
	for _, l := range strings.Split(out, "\n") {
		if m := reEAName.FindStringSubmatch(l); m != nil {
			names = append(names, m[1])
		}
	}
	return names
}

// DebugfsXattr returns the value of the extended attribute name of path
// as debugfs's `ea_get -x` prints it (POSIX ACLs come back in the xattr
// format user space sees, as e2fsprogs translates them), and whether it
// exists.
func DebugfsXattr(t testing.TB, img, path, name string) ([]byte, bool) {
	t.Helper()
	out, errOut := DebugfsOutErr(t, img, fmt.Sprintf("ea_get -x %q %q", path, name))
	if strings.Contains(errOut, "key not found") {
		return nil, false
	}
	if errOut != "" {
		t.Fatalf("debugfs ea_get %s %s: %s", path, name, errOut)
	}
	i := strings.Index(out, " = ")
	if i < 0 {
		// A zero-length value prints without " = ".
		if strings.Contains(out, "(0)") {
			return []byte{}, true
		}
		t.Fatalf("debugfs ea_get %s %s: cannot parse %q", path, name, out)
	}
	v, err := hex.DecodeString(strings.ReplaceAll(strings.TrimSpace(out[i+3:]), " ", ""))
	if err != nil {
		t.Fatalf("debugfs ea_get %s %s: %v in %q", path, name, err, out)
	}
	return v, true
}

var reTime = regexp.MustCompile(`(?m)^\s*(ctime|atime|mtime|crtime):\s+0x([0-9a-f]+)(?::([0-9a-f]+))?`)

// StatTimes returns the inode times debugfs stat printed ("atime",
// "mtime", "ctime", "crtime"), with nanoseconds and the extra epoch bits
// when the inode has them.
func StatTimes(s Stat) map[string]time.Time {
	out := map[string]time.Time{}
	for _, m := range reTime.FindAllStringSubmatch(s.Raw, -1) {
		sec, _ := strconv.ParseUint(m[2], 16, 32)
		secs := int64(int32(uint32(sec)))
		var nsec int64
		if m[3] != "" {
			extra, _ := strconv.ParseUint(m[3], 16, 32)
			secs += int64(extra&3) << 32
			nsec = int64(extra >> 2)
		}
		out[m[1]] = time.Unix(secs, nsec).UTC()
	}
	return out
}
