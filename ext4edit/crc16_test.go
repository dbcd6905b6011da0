package ext4edit

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCrc16(t *testing.T) {
	tests := []struct {
		name string
		crc  uint16
		in   []byte
		want uint16
	}{
		{"empty keeps init 0", 0, nil, 0},
		{"empty keeps init ffff", 0xffff, nil, 0xffff},
		// CRC-16/ARC check value.
		{"arc check", 0, []byte("123456789"), 0xBB3D},
		// CRC-16/MODBUS is the same register with init 0xffff, which is
		// how ext4 calls it.
		{"modbus check", 0xffff, []byte("123456789"), 0x4B37},
		{"single zero byte", 0, []byte{0}, 0},
		// Spot checks against lib/crc16.c's crc16_table.
		{"single 0x01", 0, []byte{1}, 0xC0C1},
		{"single 0x02", 0, []byte{2}, 0xC181},
		{"single 0x80", 0, []byte{0x80}, 0xA001},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, crc16(tc.crc, tc.in))
		})
	}
}

// A CRC over a concatenation equals the CRC chained over its parts, which
// is how the group-descriptor checksum is built (uuid, group, descriptor).
func TestCrc16Chaining(t *testing.T) {
	data := []byte("the quick brown fox jumps over the lazy dog")
	whole := crc16(^uint16(0), data)
	for i := range data {
		require.Equal(t, whole, crc16(crc16(^uint16(0), data[:i]), data[i:]), "split at %d", i)
	}
}
