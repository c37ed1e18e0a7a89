package consulagent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Established counts the established TCP connections process pid holds to
// port on this host: its socket inodes (from /proc/<pid>/fd) matched against
// the /proc/<pid>/net/tcp{,6} entries whose remote port is port. It counts
// what the kernel sees, whatever the process thinks it holds.
func Established(pid, port int) (int, error) {
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		return 0, err
	}
	inodes := make(map[string]bool, len(fds))
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		if ino, ok := strings.CutPrefix(link, "socket:["); ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	wantPort := fmt.Sprintf("%04X", port)
	n := 0
	for _, table := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "01" { // 01: ESTABLISHED
				continue
			}
			_, remPort, ok := strings.Cut(f[2], ":")
			if ok && remPort == wantPort && inodes[f[9]] {
				n++
			}
		}
	}
	return n, nil
}
