// Command ext4edit edits an ext4 image with debugfs's request language,
// without e2fsprogs:
//
//	ext4edit [-w] [-f SCRIPT|-] [-R REQUEST] IMAGE
//	ext4edit -resize SIZE|+SIZE|min IMAGE
//
// -R runs one request, -f runs a script ("-" or no -f/-R: standard input).
// Changes are committed when the requests are done. The exit status is 1
// when any request failed (each failure is reported on standard error with
// its line number), 2 for a usage error or an image that cannot be opened.
// See package github.com/banger/ext4kit/ext4edit/script for the requests.
//
// -resize grows (or shrinks) the filesystem and the image file to SIZE:
// bytes or a number with a binary K, M, G or T suffix, +SIZE to grow by
// that much, or min for the smallest size that holds the content. It
// prints the old and the new size; exit 0 done, 1 failed (the image
// unchanged), 2 usage.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/ext4edit/script"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("ext4edit", flag.ContinueOnError)
	fl.SetOutput(stderr)
	writable := fl.Bool("w", false, "open the image read-write")
	scriptPath := fl.String("f", "", "run the requests in `SCRIPT` (- for standard input)")
	request := fl.String("R", "", "run the single `REQUEST`")
	resize := fl.String("resize", "", "resize the filesystem and the image file to `SIZE` (bytes, K/M/G/T suffix, +SIZE to grow by, or min)")
	dropVerity := fl.Bool("drop-verity", false, "with -w or -resize: remove a dm-verity hash tree that seals the image (edits of a sealed image are refused)")
	check := fl.Bool("check", false, "check IMAGE read-only like e2fsck -fn: exit 0 clean, 4 problems (one per line), 8 could not check")
	asJSON := fl.Bool("json", false, "with -check: print the report as one JSON object")
	demo := fl.String("demo", "", "write the embedded demo rootfs and guest-agent assets to `DIR`, inject them, show the result")
	fl.Usage = func() {
		fmt.Fprintln(stderr, "usage: ext4edit [-w [-drop-verity]] [-f SCRIPT|-] [-R REQUEST] IMAGE")
		fmt.Fprintln(stderr, "       ext4edit -resize SIZE|+SIZE|min [-drop-verity] IMAGE")
		fmt.Fprintln(stderr, "       ext4edit -check [-json] IMAGE")
		fmt.Fprintln(stderr, "       ext4edit -demo DIR")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		return 2
	}
	if *check {
		if fl.NArg() != 1 || *scriptPath != "" || *request != "" || *writable || *resize != "" || *demo != "" || *dropVerity {
			fl.Usage()
			return 2
		}
		return runCheck(fl.Arg(0), *asJSON, stdout, stderr)
	}
	if *asJSON {
		fl.Usage()
		return 2
	}
	if *demo != "" {
		if fl.NArg() != 0 || *scriptPath != "" || *request != "" || *writable || *dropVerity {
			fl.Usage()
			return 2
		}
		return runDemo(*demo, stdout, stderr)
	}
	if *resize != "" {
		if fl.NArg() != 1 || *scriptPath != "" || *request != "" || *writable {
			fl.Usage()
			return 2
		}
		return runResize(*resize, fl.Arg(0), &ext4edit.Options{DropVerity: *dropVerity}, stdout, stderr)
	}
	if fl.NArg() != 1 || (*scriptPath != "" && *request != "") || (*dropVerity && !*writable) {
		fl.Usage()
		return 2
	}

	in := stdin
	switch {
	case *request != "":
		in = strings.NewReader(*request)
	case *scriptPath != "" && *scriptPath != "-":
		f, err := os.Open(*scriptPath)
		if err != nil {
			fmt.Fprintln(stderr, "ext4edit:", err)
			return 2
		}
		defer f.Close()
		in = f
	}

	img, err := ext4edit.Open(fl.Arg(0), &ext4edit.Options{ReadOnly: !*writable, DropVerity: *dropVerity})
	if err != nil {
		fmt.Fprintln(stderr, "ext4edit:", err)
		return 2
	}
	r := &script.Runner{Img: img, Stdout: stdout, Stderr: stderr, Writable: *writable}
	failed, err := r.RunScript(in)
	if err != nil {
		fmt.Fprintln(stderr, "ext4edit: reading requests:", err)
		failed++
	}
	if err := img.Close(); err != nil {
		fmt.Fprintln(stderr, "ext4edit: committing:", err)
		failed++
	}
	if failed > 0 {
		return 1
	}
	return 0
}
