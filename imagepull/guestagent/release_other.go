//go:build !unix

package guestagent

// kernelRelease is empty where there is no uname.
func kernelRelease() string { return "" }
