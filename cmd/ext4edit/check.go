package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/banger/ext4kit/ext4edit"
)

// Exit codes of -check, e2fsck -n's: nothing wrong, problems found, the
// image could not be checked (unreadable, an unsupported feature).
const (
	checkClean    = 0
	checkProblems = 4
	checkFailed   = 8
)

// runCheck runs ext4edit.Check on path: one line per problem (or one
// JSON object with asJSON), then the verdict on stderr.
func runCheck(path string, asJSON bool, stdout, stderr io.Writer) int {
	rep, err := ext4edit.Check(path, nil)
	if err != nil {
		fmt.Fprintln(stderr, "ext4edit -check:", err)
		return checkFailed
	}
	if asJSON {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			fmt.Fprintln(stderr, "ext4edit -check:", err)
			return checkFailed
		}
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		for _, n := range rep.Notes {
			fmt.Fprintf(stdout, "note: %s\n", n)
		}
		for _, p := range rep.Problems {
			fmt.Fprintln(stdout, p.String())
		}
	}
	verdict := "clean"
	if !rep.Clean {
		verdict = fmt.Sprintf("%d problems", len(rep.Problems))
	}
	fmt.Fprintf(stderr, "%s: %s (%d inodes in use, %d of %d blocks); not checked: %d items (-json lists them)\n",
		path, verdict, rep.Inodes, rep.BlocksUsed, rep.Blocks, len(rep.NotChecked))
	if !rep.Clean {
		return checkProblems
	}
	return checkClean
}
