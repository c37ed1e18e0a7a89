package output

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// sparesSupported reports whether dir is on a local file system where a
// write lease sees every reader and two names can be exchanged (ext2 and
// ext3 share ext4's magic; their drivers cannot exchange, and a rename is
// made instead).
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

func openSpare(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|unix.O_NOFOLLOW, 0)
}

var errNotOurs = errors.New("the spare is not a regular file of sdhub's with one name")

// lease takes a write lease on file, which the kernel grants only when no
// one else has the file open, and which makes anyone who opens it wait
// until unlock. It fails too when the file is not a regular file, not
// sdhub's user's, or has another name.
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
		if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 1 || int(st.Uid) != os.Geteuid() {
			err = errNotOurs
			return
		}
		_, err = unix.FcntlInt(fd, unix.F_SETLEASE, unix.F_WRLCK)
		switch {
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
			// Leases turned off (fs.leases-enable), refused by the
			// file system or a sandbox: never granted.
			err = fmt.Errorf("%w: %w", errNoLeases, err)
		case err != nil:
			err = fmt.Errorf("taking a write lease: %w", err) // EAGAIN: someone has it open
		}
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
