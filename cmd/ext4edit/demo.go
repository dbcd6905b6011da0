package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/ext4edit/script"
	"github.com/banger/ext4kit/internal/fixtures"
)

// runDemo is `ext4edit -demo DIR`: the main job on an embedded, offline
// default. It writes the embedded demo rootfs to DIR/demo.ext4 (replacing
// an earlier one) and the guest-agent assets to DIR/assets, runs the
// embedded injection script -- the one the microVM daemon feeds to
// `debugfs -w -f -` -- through the script runner, commits, then reopens the
// image read-only and prints `stat` of every injected path and `ls -l` of
// the systemd wants directory. Exit status: 0 done, 1 a request failed, 2
// the demo could not be set up or committed.
func runDemo(dir string, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintln(stderr, "ext4edit -demo:", err)
		return 2
	}
	img, assets, err := writeDemoFiles(dir)
	if err != nil {
		return fail(err)
	}
	requests := absHostNames(fixtures.InjectScript(), assets)

	fmt.Fprintf(stdout, "== ext4edit -w -f inject.debugfs %s (host files from %s)\n", img, assets)
	fmt.Fprintln(stdout, "   (notices for /usr and /etc, which the image already has, are expected)")
	im, err := ext4edit.Open(img, nil)
	if err != nil {
		return fail(err)
	}
	r := &script.Runner{Img: im, Stdout: stdout, Stderr: stderr, Writable: true}
	failed, err := r.RunScript(strings.NewReader(requests))
	if err != nil {
		fmt.Fprintln(stderr, "ext4edit -demo: reading requests:", err)
		failed++
	}
	if err := im.Close(); err != nil {
		return fail(fmt.Errorf("committing: %w", err))
	}

	// Read back what the commit left on disk.
	im, err = ext4edit.Open(img, &ext4edit.Options{ReadOnly: true})
	if err != nil {
		return fail(err)
	}
	defer im.Close()
	r = &script.Runner{Img: im, Stdout: stdout, Stderr: stderr}
	show := func(request string) {
		fmt.Fprintf(stdout, "\n== %s\n", request)
		if r.RunLine(0, request) != nil {
			failed++
		}
	}
	for _, p := range fixtures.InjectedPaths() {
		show("stat " + quote(p))
	}
	show("ls -l " + quote(fixtures.WantsDir))

	fmt.Fprintf(stdout, "\nThe image is %s; where e2fsprogs is installed, judge it with\n", img)
	fmt.Fprintf(stdout, "  e2fsck -fn %s\n  debugfs -R 'ls -l %s' %s\n", img, fixtures.WantsDir, img)
	if failed > 0 {
		fmt.Fprintf(stderr, "ext4edit -demo: %d request(s) failed\n", failed)
		return 1
	}
	return 0
}

// writeDemoFiles writes the demo image and the assets into dir.
func writeDemoFiles(dir string) (img, assets string, err error) {
	if dir == "" {
		return "", "", fmt.Errorf("no directory given")
	}
	assets = filepath.Join(dir, "assets")
	if err := os.MkdirAll(assets, 0o755); err != nil {
		return "", "", err
	}
	data, err := fixtures.DemoImage()
	if err != nil {
		return "", "", fmt.Errorf("embedded demo image: %w", err)
	}
	img = filepath.Join(dir, "demo.ext4")
	if err := os.WriteFile(img, data, 0o644); err != nil {
		return "", "", err
	}
	for _, name := range fixtures.AssetNames() {
		// 0644 on the host: the script's sif requests set the modes.
		if err := os.WriteFile(filepath.Join(assets, name), fixtures.Asset(name), 0o644); err != nil {
			return "", "", err
		}
	}
	return img, assets, nil
}

// absHostNames rewrites the relative host file names of write requests to
// paths under dir (the runner, like debugfs, opens them against the working
// directory, which the demo leaves alone). Line numbers are kept.
func absHostNames(requests, dir string) string {
	lines := strings.Split(requests, "\n")
	for i, line := range lines {
		args, err := script.Parse(line)
		if err != nil || len(args) != 3 || args[0] != "write" || filepath.IsAbs(args[1]) {
			continue
		}
		lines[i] = "write " + quote(filepath.Join(dir, args[1])) + " " + quote(args[2])
	}
	return strings.Join(lines, "\n")
}

// quote makes one request word of s (debugfs quoting: "" is a literal ").
func quote(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}
