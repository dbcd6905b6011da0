package ext4edit_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/internal/testimg"
)

// knownMisses are corpus images e2fsck -fn calls dirty and Check calls
// clean, each with the reason: what e2fsck checks that Check does not.
// Keyed by "variant--class".
var knownMisses = map[string]string{}

// TestCheckCorpusAgreement runs testdata/corpus/make-corpus.sh (510
// images: 10 feature mixes x 51 corruptions, each with e2fsck -fn's exit
// code) and Check on every image. It prints the agreement per corruption
// class and fails on any image e2fsck calls clean that Check calls dirty,
// and on any image e2fsck calls dirty that Check calls clean unless
// knownMisses lists it.
func TestCheckCorpusAgreement(t *testing.T) {
	testimg.Require(t, "mkfs.ext4", "debugfs", "e2fsck", "dumpe2fs")
	if testing.Short() {
		t.Skip("the corpus takes about 40 s to make: not in -short")
	}
	dir := t.TempDir()
	out, err := exec.Command("bash", filepath.Join("testdata", "corpus", "make-corpus.sh"), dir).CombinedOutput()
	if err != nil {
		t.Fatalf("make-corpus.sh: %v\n%s", err, out)
	}
	f, err := os.Open(filepath.Join(dir, "manifest"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type row struct{ images, e2dirty, weDirty, agree, notChecked int }
	rows := map[string]*row{}
	var fp, fn []string
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), "\t")
		if len(fields) != 4 {
			t.Fatalf("manifest line %q", sc.Text())
		}
		name, variant, class := fields[0], fields[1], fields[2]
		rc, _ := strconv.Atoi(fields[3])
		n++
		r := rows[class]
		if r == nil {
			r = &row{}
			rows[class] = r
		}
		r.images++
		e2dirty := rc != 0
		if e2dirty {
			r.e2dirty++
		}
		rep, err := ext4edit.Check(filepath.Join(dir, name), nil)
		var weDirty bool
		switch {
		case errors.Is(err, ext4edit.ErrNotChecked):
			r.notChecked++
			weDirty = true // could not check: never a clean verdict
		case err != nil:
			t.Fatalf("%s: %v", name, err)
		default:
			weDirty = !rep.Clean
		}
		if weDirty {
			r.weDirty++
		}
		if weDirty == e2dirty {
			r.agree++
			continue
		}
		key := variant + "--" + class
		if !e2dirty {
			var lines []string
			for _, p := range rep.Problems {
				lines = append(lines, "    "+p.String())
			}
			fp = append(fp, fmt.Sprintf("%s: e2fsck clean, Check dirty:\n%s", name, strings.Join(lines, "\n")))
		} else if _, ok := knownMisses[key]; !ok {
			fn = append(fn, fmt.Sprintf("%s: e2fsck exit %d, Check clean", name, rc))
		}
	}
	if n < 300 {
		t.Fatalf("the corpus holds %d images, want at least 300", n)
	}
	var classes []string
	for c := range rows {
		classes = append(classes, c)
	}
	sort.Strings(classes)
	var tab strings.Builder
	fmt.Fprintf(&tab, "%-22s %6s %9s %9s %6s %12s\n", "corruption", "images", "e2fsck!", "Check!", "agree", "not checked")
	total := row{}
	for _, c := range classes {
		r := rows[c]
		fmt.Fprintf(&tab, "%-22s %6d %9d %9d %6d %12d\n", c, r.images, r.e2dirty, r.weDirty, r.agree, r.notChecked)
		total.images += r.images
		total.e2dirty += r.e2dirty
		total.weDirty += r.weDirty
		total.agree += r.agree
		total.notChecked += r.notChecked
	}
	fmt.Fprintf(&tab, "%-22s %6d %9d %9d %6d %12d\n", "all", total.images, total.e2dirty, total.weDirty, total.agree, total.notChecked)
	t.Logf("agreement with e2fsck -fn (! = dirty):\n%s", tab.String())
	if len(fp) > 0 {
		t.Errorf("%d images e2fsck -fn calls clean and Check dirty:\n%s", len(fp), strings.Join(fp, "\n"))
	}
	if len(fn) > 0 {
		t.Errorf("%d images e2fsck -fn calls dirty and Check clean, not in knownMisses:\n%s", len(fn), strings.Join(fn, "\n"))
	}
}
