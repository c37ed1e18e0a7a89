package output

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// sparesSupported reports whether dir is on a local file system where a
// write lease sees every reader and two names can be exchanged.
func sparesSupported(dir string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false
	}
	switch uint32(st.Type) {
	case unix.EXT4_SUPER_MAGIC, unix.XFS_SUPER_MAGIC, unix.BTRFS_SUPER_MAGIC, unix.F2FS_SUPER_MAGIC, unix.TMPFS_MAGIC:
		return true
	}
	return false
}

var errLinked = errors.New("the spare has another name")

// lease takes a write lease on file, which the kernel grants only when no
// one else has the file open, and which makes anyone who opens it wait
// until unlock. It fails too when the file has another name.
func lease(file *os.File) (unlock func(), err error) {
	rc, err := file.SyscallConn()
	if err != nil {
		return nil, err
	}
	cerr := rc.Control(func(fd uintptr) {
		var st unix.Stat_t
		if err = unix.Fstat(int(fd), &st); err != nil {
			return
		}
		if st.Nlink != 1 {
			err = errLinked
			return
		}
		_, err = unix.FcntlInt(fd, unix.F_SETLEASE, unix.F_WRLCK)
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return func() {
		_ = rc.Control(func(fd uintptr) { _, _ = unix.FcntlInt(fd, unix.F_SETLEASE, unix.F_UNLCK) })
	}, nil
}

// exchange swaps the files at a and b, atomically.
func exchange(a, b string) error {
	if err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE); err != nil {
		return &os.LinkError{Op: "exchange", Old: a, New: b, Err: err}
	}
	return nil
}
