//go:build !linux

// Command verityinit is a Linux guest's /init (see main_linux.go).
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "verityinit: runs only as a Linux guest's /init")
	os.Exit(2)
}
