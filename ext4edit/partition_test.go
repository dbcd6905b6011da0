package ext4edit

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/diskfs/go-diskfs/partition/mbr"
)

const testDiskSize = 64 << 20

// makeDisk writes table to a new 64 MiB image with go-diskfs.
func makeDisk(t *testing.T, table partition.Table) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	d, err := diskfs.Create(path, testDiskSize, diskfs.SectorSizeDefault)
	if err != nil {
		t.Fatalf("diskfs.Create: %v", err)
	}
	if err := d.Partition(table); err != nil {
		t.Fatalf("Partition: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return path
}

type wantPart struct {
	n            int
	offset, size int64
}

// checkPartitions opens path and checks partitionOffset for every want, and
// that the file offset is left where it was.
func checkPartitions(t *testing.T, path string, wants []wantPart) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(123, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	for _, w := range wants {
		off, size, err := partitionOffset(f, w.n)
		if err != nil {
			t.Errorf("partition %d: %v", w.n, err)
			continue
		}
		if off != w.offset || size != w.size {
			t.Errorf("partition %d: offset %d size %d, want offset %d size %d", w.n, off, size, w.offset, w.size)
		}
	}
	if pos, _ := f.Seek(0, io.SeekCurrent); pos != 123 {
		t.Errorf("file offset moved to %d", pos)
	}
}

// checkPartitionErr expects partitionOffset(path, n) to fail with an error
// containing every one of wants.
func checkPartitionErr(t *testing.T, path string, n int, wants ...string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	off, size, err := partitionOffset(f, n)
	if err == nil {
		t.Errorf("partition %d: got offset %d size %d, want an error", n, off, size)
		return
	}
	for _, w := range wants {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("partition %d: error %q does not mention %q", n, err, w)
		}
	}
}

func TestPartitionGPT(t *testing.T) {
	path := makeDisk(t, &gpt.Table{
		LogicalSectorSize:  512,
		PhysicalSectorSize: 512,
		ProtectiveMBR:      true,
		Partitions: []*gpt.Partition{
			{Index: 1, Start: 2048, End: 2048 + 20480 - 1, Type: gpt.LinuxFilesystem, Name: "one"},
			{Index: 2, Start: 40960, End: 120000, Type: gpt.LinuxFilesystem, Name: "two"},
		},
	})
	checkPartitions(t, path, []wantPart{
		{1, 2048 * 512, 20480 * 512},
		{2, 40960 * 512, (120000 - 40960 + 1) * 512},
	})
	checkPartitionErr(t, path, 3, "partition 3", "GPT", "2 partitions")
	checkPartitionErr(t, path, 0, "partition number")
	checkPartitionErr(t, path, -1, "partition number")
}

// TestPartitionGPTSparse: GPT numbers are entry slots, which may have gaps.
func TestPartitionGPTSparse(t *testing.T) {
	path := makeDisk(t, &gpt.Table{
		LogicalSectorSize:  512,
		PhysicalSectorSize: 512,
		ProtectiveMBR:      true,
		Partitions: []*gpt.Partition{
			{Index: 1, Start: 2048, End: 4095, Type: gpt.LinuxFilesystem},
			{Index: 3, Start: 4096, End: 8191, Type: gpt.LinuxFilesystem},
		},
	})
	checkPartitions(t, path, []wantPart{
		{1, 2048 * 512, 2048 * 512},
		{3, 4096 * 512, 4096 * 512},
	})
	checkPartitionErr(t, path, 2, "partition 2", "2 partitions", "numbers 1, 3")
}

func TestPartitionMBR(t *testing.T) {
	path := makeDisk(t, &mbr.Table{
		LogicalSectorSize:  512,
		PhysicalSectorSize: 512,
		Partitions: []*mbr.Partition{
			{Bootable: true, Type: mbr.Linux, Start: 2048, Size: 20480},
			{Type: mbr.Linux, Start: 24576, Size: 40960},
			{Type: mbr.Linux, Start: 70000, Size: 0},
		},
	})
	checkPartitions(t, path, []wantPart{
		{1, 2048 * 512, 20480 * 512},
		{2, 24576 * 512, 40960 * 512},
	})
	checkPartitionErr(t, path, 3, "partition 3", "size 0")
	checkPartitionErr(t, path, 4, "partition 4", "MBR", "2 partitions")
	checkPartitionErr(t, path, 5, "partition 5", "2 partitions", "logical")
}

func TestPartitionBeyondEnd(t *testing.T) {
	path := makeDisk(t, &mbr.Table{
		LogicalSectorSize:  512,
		PhysicalSectorSize: 512,
		Partitions: []*mbr.Partition{
			{Type: mbr.Linux, Start: 2048, Size: testDiskSize / 512},
		},
	})
	checkPartitionErr(t, path, 1, "past the end")
}

func TestPartitionNoTable(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.img")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	checkPartitionErr(t, empty, 1, "no partition table")

	zero := filepath.Join(dir, "zero.img")
	if err := os.WriteFile(zero, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	checkPartitionErr(t, zero, 1, "no partition table")

	// A GPT whose primary and backup headers are both gone, behind an
	// intact protective MBR.
	path := makeDisk(t, &gpt.Table{
		LogicalSectorSize:  512,
		PhysicalSectorSize: 512,
		ProtectiveMBR:      true,
		Partitions: []*gpt.Partition{
			{Index: 1, Start: 2048, End: 4095, Type: gpt.LinuxFilesystem},
		},
	})
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	sec := make([]byte, 512)
	for _, off := range []int64{512, testDiskSize - 512} {
		if _, err := f.WriteAt(sec, off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	checkPartitionErr(t, path, 1, "protective MBR", "GPT")
}

// TestPartitionSfdisk reads tables written by util-linux sfdisk.
func TestPartitionSfdisk(t *testing.T) {
	if _, err := exec.LookPath("sfdisk"); err != nil {
		t.Skip("sfdisk not on PATH")
	}
	for _, tc := range []struct {
		label, script string
	}{
		{"gpt", "label: gpt\n,10MiB,L\n,20MiB,L\n,,L\n"},
		{"dos", "label: dos\n,10MiB,83\n,,E\n,5MiB,83\n,8MiB,83\n"},
	} {
		t.Run(tc.label, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "disk.img")
			if err := os.WriteFile(path, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, testDiskSize); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", path)
			cmd.Stdin = strings.NewReader(tc.script)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("sfdisk: %v\n%s", err, out)
			}
			out, err := exec.Command("sfdisk", "--json", path).Output()
			if err != nil {
				t.Fatalf("sfdisk --json: %v", err)
			}
			var dump struct {
				PartitionTable struct {
					SectorSize int64 `json:"sectorsize"`
					Partitions []struct {
						Node  string `json:"node"`
						Start int64  `json:"start"`
						Size  int64  `json:"size"`
						Type  string `json:"type"`
					} `json:"partitions"`
				} `json:"partitiontable"`
			}
			if err := json.Unmarshal(out, &dump); err != nil {
				t.Fatalf("sfdisk --json: %v\n%s", err, out)
			}
			ss := dump.PartitionTable.SectorSize
			if ss == 0 {
				ss = 512
			}
			var wants []wantPart
			var extended, logical []int
			for _, p := range dump.PartitionTable.Partitions {
				n, err := strconv.Atoi(strings.TrimPrefix(p.Node, path))
				if err != nil {
					t.Fatalf("partition node %q: %v", p.Node, err)
				}
				switch {
				case tc.label == "dos" && n > 4:
					logical = append(logical, n)
				case tc.label == "dos" && p.Type == "5":
					extended = append(extended, n)
				default:
					wants = append(wants, wantPart{n, p.Start * ss, p.Size * ss})
				}
			}
			if len(wants) == 0 {
				t.Fatalf("sfdisk made no partitions:\n%s", out)
			}
			checkPartitions(t, path, wants)
			checkPartitionErr(t, path, len(wants)+len(extended)+1)
			for _, n := range extended {
				checkPartitionErr(t, path, n, "extended")
			}
			for _, n := range logical {
				checkPartitionErr(t, path, n, "logical")
			}
		})
	}
}
