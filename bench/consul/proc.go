package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// connections counts the established TCP connections that process pid
// holds to port: its socket inodes (from /proc/<pid>/fd) matched against
// /proc/<pid>/net/tcp{,6} entries whose remote port is port.
func connections(pid, port int) (int, error) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, err
	}
	inodes := make(map[string]bool, len(fds))
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join(fmt.Sprintf("/proc/%d/fd", pid), fd.Name()))
		if err != nil {
			continue
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

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
