// Package fuzz holds the ext4edit fuzz targets (fuzz_test.go) and their
// committed seed corpus (testdata/fuzz/<Target>/, regenerated with
// `go test -tags genseeds -run TestGenSeeds ./fuzz/`). A plain
// `go test ./fuzz/` runs every seed once as a regression test;
// smoke.sh fuzzes each target briefly for CI:
//
//	go test ./fuzz/ -run '^$' -fuzz '^FuzzOpenWalk$' -fuzztime 10m -parallel 1
//
// Targets:
//   - FuzzOpenWalk: any bytes (raw, gzip, or the sparse form below) as an
//     image, opened read-only and walked completely.
//   - FuzzEdits: a byte string decoded as edit operations on a small valid
//     image, checked against an in-memory model of the tree and by
//     e2fsck -fn.
//   - FuzzBuildTar: a tar stream applied to a fresh image through the
//     public API, then checked by read-back and e2fsck -fn.
//   - FuzzPullOCILayout, FuzzPullDockerArchive (pull_fuzz_test.go): a
//     whole image, an OCI layout or a docker save archive, given to
//     imagepull.Pull. The input is a flags byte, a count of layers with
//     missing blobs, and length-prefixed pieces (the documents, then the
//     layer blobs), each given, left out, or generated from the others
//     with correct digests, sizes and diff IDs unless the flags ask for
//     wrong ones. Pull must not panic or hang, must write nothing outside
//     OUTDIR, and must publish nothing on failure; a pulled image must
//     walk cleanly and pass e2fsck -fn. The seeds are made in code:
//     valid images (plain, gzip, zstd layers) and hostile ones (cut
//     streams, wrong diff IDs and sizes, bad whiteouts and device
//     numbers, sparse and deep entries, huge documents, missing blobs),
//     each with the outcome Pull must give it.
//
// Image inputs may be "sparse": the magic "EXT4SPR1", a uvarint image
// size, then chunks of (uvarint count of zero bytes to skip, uvarint data
// length, data). A 4 MiB mkfs image is a 3-4 KiB sparse input whose bytes
// the fuzzer mutates as the image's own bytes.
package fuzz
