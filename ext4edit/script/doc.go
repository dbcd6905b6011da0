// Package script runs debugfs's request language against an ext4edit.Image,
// so image tooling written for `debugfs -w -f SCRIPT IMG` can run without
// e2fsprogs.
//
// Syntax is what debugfs reads with -f or -R: one request per line, words
// split on blanks, "double quotes" around words with blanks ("" inside
// quotes is a literal quote), blank lines and lines starting with # skipped
// (debugfs only skips # in the first column). Relative paths resolve
// against the directory set by cd, which starts at "/"; paths are cleaned
// lexically, so ".." drops the previous name even after a symlink (debugfs
// follows the on-disk ".." entry). cd, like debugfs, does not follow a
// final symlink.
//
// Requests: mkdir [-p], write, symlink, set_inode_field (sif), link (ln),
// rm, unlink, rmdir, mknod, cd, stat (show_inode_info), ls
// (list_directory) [-l] [-p], cat, dump [-p]. Where debugfs leaves the
// filesystem inconsistent this package does the whole job instead:
//
//   - ln makes a real hard link (debugfs adds the entry without raising the
//     link count, which e2fsck then flags);
//   - unlink is rm (debugfs removes the entry only, leaking the inode);
//   - sif mode must keep the inode's file type bits (debugfs writes any raw
//     i_mode, so "sif F mode 0755" leaves a typeless inode);
//   - mknod resolves its path (debugfs links the literal "/a/b" as a name
//     in the current directory);
//   - mkdir of an existing directory is a notice, not a failure; mkdir of an
//     existing non-directory fails (debugfs prints the same error for both
//     and goes on).
//
// A Runner reports every failure (debugfs -f prints them but exits 0 unless
// a request name is unknown), so callers no longer scan output for errors.
//
// Like debugfs, write refuses to replace an existing file and takes the
// new file's permission bits (setuid/setgid/sticky included) from the host
// file; mkdir makes 0755 directories, symlink 0777 links and mknod nodes
// with mode 0000; new inodes are owned by the image's default owner.
// Output of stat and ls follows debugfs's layout for the fields the editor
// exposes; on-disk details (checksums, extent maps, rec_len) are left out
// and ls lists names sorted rather than in on-disk order.
package script
