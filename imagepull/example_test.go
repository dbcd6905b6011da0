package imagepull_test

import (
	"context"
	"fmt"
	"io/fs"
	"log"
	"os"
	"path/filepath"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/imagepull"
	"github.com/banger/ext4kit/internal/testimg"
)

// Pull runs the whole pipeline: fetch (here from an OCI image layout on
// disk), build, finalize with the guest agents, stage into OUTDIR.
func ExamplePull() {
	outdir, err := os.MkdirTemp("", "imagepull-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(outdir)
	agent, err := testimg.BuildAgent() // go build ./cmd/banger-vsock-agent
	if err != nil {
		log.Fatal(err)
	}

	res, err := imagepull.Pull(context.Background(), "oci:../testdata/demo-oci:latest", outdir, imagepull.PullOptions{
		Size:     64 << 20, // zero: estimated from the layers
		Finalize: imagepull.GuestAgentsStep(imagepull.InjectOptions{AgentPath: agent}),
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(filepath.Base(res.Rootfs), res.Metadata.Platform, len(res.Metadata.Layers), "layers")
	fmt.Println("cmd:", res.Metadata.Cmd)

	img, err := ext4edit.Open(res.Rootfs, &ext4edit.Options{ReadOnly: true})
	if err != nil {
		log.Fatal(err)
	}
	defer img.Close()
	hostname, err := img.ReadFile("/etc/hostname")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("hostname: %s", hostname)
	printTree(img, "/etc/systemd/system/multi-user.target.wants")
	// Output:
	// rootfs.ext4 linux/amd64 3 layers
	// cmd: [/sbin/init]
	// hostname: banger-demo
	// /etc/systemd/system/multi-user.target.wants/banger-network.service Lrwxrwxrwx 0:0 -> /etc/systemd/system/banger-network.service
	// /etc/systemd/system/multi-user.target.wants/banger-vsock-agent.service Lrwxrwxrwx 0:0 -> /etc/systemd/system/banger-vsock-agent.service
	// /etc/systemd/system/multi-user.target.wants/demo-hello.service Lrwxrwxrwx 0:0 -> /usr/lib/systemd/system/demo-hello.service
}

// A daemon that wants its own steps between the phases runs them one by
// one: Fetch, BuildExt4File into a file it made in OUTDIR, Finalize with
// its own steps beside the guest agents, Close (one commit), then
// StageBootArtifacts, which publishes under the OUTDIR lock.
func Example_phases() {
	ctx := context.Background()
	outdir, err := os.MkdirTemp("", "imagepull-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(outdir)
	agent, err := testimg.BuildAgent()
	if err != nil {
		log.Fatal(err)
	}

	fetched, err := imagepull.Fetch(ctx, "oci:../testdata/demo-oci:latest", imagepull.FetchOptions{})
	if err != nil {
		log.Fatal(err)
	}
	// In OUTDIR, so the stage renames it into place; made with O_EXCL,
	// and BuildExt4File writes through this descriptor only.
	tmp, err := os.CreateTemp(outdir, ".rootfs.ext4.tmp-*")
	if err != nil {
		log.Fatal(err)
	}
	if err := tmp.Chmod(0o644); err != nil { // CreateTemp's 0600 would keep a VMM user out
		log.Fatal(err)
	}
	img, stats, err := imagepull.BuildExt4File(ctx, tmp, fetched.LayerSources(), imagepull.BuildOptions{
		Size: 64 << 20,
		Seed: []byte(fetched.ConfigDigest), // same layers, same bytes
	})
	if err != nil {
		os.Remove(tmp.Name())
		log.Fatal(err)
	}
	vmName := func(img *ext4edit.Image) error {
		return img.WriteFile("/etc/hostname", []byte("vm-42\n"), 0o644)
	}
	if err := imagepull.Finalize(img, imagepull.GuestAgentsStep(imagepull.InjectOptions{AgentPath: agent}), vmName); err != nil {
		img.Discard()
		os.Remove(tmp.Name())
		log.Fatal(err)
	}
	if err := img.Close(); err != nil {
		os.Remove(tmp.Name())
		log.Fatal(err)
	}
	if err := imagepull.StageBootArtifacts(tmp.Name(), outdir, fetched.Metadata(stats), imagepull.StageOptions{}); err != nil {
		log.Fatal(err)
	}

	ents, err := os.ReadDir(outdir)
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range ents {
		fmt.Println(e.Name())
	}
	img, err = ext4edit.Open(filepath.Join(outdir, imagepull.RootfsName), &ext4edit.Options{ReadOnly: true})
	if err != nil {
		log.Fatal(err)
	}
	defer img.Close()
	hostname, err := img.ReadFile("/etc/hostname")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("hostname: %s", hostname)
	// Output:
	// .imagepull.lock
	// image.json
	// rootfs.ext4
	// hostname: vm-42
}

// InjectGuestAgents works in the caller's editor session: the assets go
// in with the caller's own edits, and Close commits them all at once.
func ExampleInjectGuestAgents() {
	dir, err := os.MkdirTemp("", "imagepull-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	// The agent binary `go build ./cmd/banger-vsock-agent` makes (a static
	// Linux executable); imagepull finds it beside itself by default.
	agent, err := testimg.BuildAgent()
	if err != nil {
		log.Fatal(err)
	}

	img, err := ext4edit.Mkfs(filepath.Join(dir, "rootfs.ext4"), 64<<20, nil)
	if err != nil {
		log.Fatal(err)
	}
	// A bare filesystem shows no init system: name the one to install for.
	if err := imagepull.InjectGuestAgents(img, imagepull.InjectOptions{AgentPath: agent, Init: imagepull.InitSystemd}); err != nil {
		img.Discard()
		log.Fatal(err)
	}
	if err := img.Close(); err != nil {
		log.Fatal(err)
	}

	img, err = ext4edit.Open(filepath.Join(dir, "rootfs.ext4"), &ext4edit.Options{ReadOnly: true})
	if err != nil {
		log.Fatal(err)
	}
	defer img.Close()
	printTree(img, "/usr/local", "/etc")
	// Output:
	// /usr/local/bin/banger-vsock-agent -rwxr-xr-x 0:0
	// /usr/local/libexec/banger-network-bootstrap -rwxr-xr-x 0:0
	// /etc/modules-load.d/banger-vsock.conf -rw-r--r-- 0:0
	// /etc/systemd/system/banger-network.service -rw-r--r-- 0:0
	// /etc/systemd/system/banger-vsock-agent.service -rw-r--r-- 0:0
	// /etc/systemd/system/multi-user.target.wants/banger-network.service Lrwxrwxrwx 0:0 -> /etc/systemd/system/banger-network.service
	// /etc/systemd/system/multi-user.target.wants/banger-vsock-agent.service Lrwxrwxrwx 0:0 -> /etc/systemd/system/banger-vsock-agent.service
}

// printTree prints the files and symlinks under each root, with their
// modes, owners and targets.
func printTree(img *ext4edit.Image, roots ...string) {
	for _, root := range roots {
		err := fs.WalkDir(img.FS(), root[1:], func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			fi, err := img.Lstat("/" + p)
			if err != nil {
				return err
			}
			in := fi.Sys().(*ext4edit.InodeInfo)
			line := fmt.Sprintf("/%s %v %d:%d", p, fi.Mode(), in.UID, in.GID)
			if fi.Mode()&fs.ModeSymlink != 0 {
				target, err := img.Readlink("/" + p)
				if err != nil {
					return err
				}
				line += " -> " + target
			}
			fmt.Println(line)
			return nil
		})
		if err != nil {
			log.Fatal(err)
		}
	}
}
