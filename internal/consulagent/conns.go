package consulagent

import (
	"strconv"
	"strings"

	"github.com/prometheus/procfs"
)

// Established counts the established TCP connections process pid holds to
// port on this host: its socket inodes (from /proc/<pid>/fd) matched
// against the TCP table entries whose remote port is port. It counts what
// the kernel sees, whatever the process thinks it holds.
func Established(pid, port int) (int, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, err
	}
	targets, err := p.FileDescriptorTargets()
	if err != nil {
		return 0, err
	}
	inodes := make(map[uint64]bool, len(targets))
	for _, t := range targets {
		if ino, ok := strings.CutPrefix(t, "socket:["); ok {
			if n, err := strconv.ParseUint(strings.TrimSuffix(ino, "]"), 10, 64); err == nil {
				inodes[n] = true
			}
		}
	}
	fs, err := procfs.NewFS("/proc/" + strconv.Itoa(pid))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, table := range []func() (procfs.NetTCP, error){fs.NetTCP, fs.NetTCP6} {
		lines, err := table()
		if err != nil {
			continue // no IPv6
		}
		for _, l := range lines {
			if l.St == 1 && l.RemPort == uint64(port) && inodes[l.Inode] { // 1: ESTABLISHED
				n++
			}
		}
	}
	return n, nil
}
