//go:build !linux

package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNoVsockOutsideLinux(t *testing.T) {
	var stderr bytes.Buffer
	require.Equal(t, 1, run(context.Background(), nil, &stderr))
	require.Equal(t, "banger-vsock-agent: vsock is only available on linux\n", stderr.String())
}
