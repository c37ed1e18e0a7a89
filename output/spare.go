package output

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// A large job's file is written over the file it replaced one write
// earlier, its spare, instead of into a new file. A new file costs the
// kernel more than its bytes: pages to allocate, blocks to allocate at
// writeback, and the replaced file's pages and blocks to free. On two
// cores that CPU is what a change waits for while Consul answers and sdhub
// reads the streams a node's change wakes. BenchmarkApply measures both.
//
// A reader never sees a part: the job's file is exchanged with the spare
// (renameat2 RENAME_EXCHANGE) once the spare holds the new bytes, fsynced.
// The spare is written over only when nobody has it open: a reader that
// opened the job's file before it became the spare, and is still reading,
// holds it open, and sdhub then writes a new file as it always did. The
// kernel says so without a race: a write lease (fcntl F_SETLEASE) is granted
// only on a file no one else has open, and while sdhub holds it anyone who
// opens the file waits (for at most fs.lease-break-time). Nor is it written
// over when it has another name (a hard link someone made to the job's
// file), is not a regular file or is not sdhub's. Spares are used only on
// local file systems (ext2/3/4, xfs, btrfs, f2fs, tmpfs), where every reader
// that opens a file is on this kernel and the lease sees it. A directory
// that other machines read over NFS or SMB must turn them off
// (Options.NoSpares): a remote reader does not hold the file open between
// its reads.

// spareMinSize is the size from which a job's file keeps a spare: below it
// a new file costs little, and a spare would double the directory's files.
const spareMinSize = 1 << 20

// spareName is the spare's name for the job file name: a dot file ending in
// ".spare", which no consumer glob matches and tempPattern does.
func spareName(name string) string { return "." + name + ".spare" }

// errNoLeases is lease's error when this kernel or file system grants no
// write lease at all: spares are then turned off.
var errNoLeases = errors.New("file leases are not available")

// write makes dir/name hold snap's bytes, atomically.
func (f *files) write(name string, snap *Snapshot) (fs.FileInfo, error) {
	if !f.spares || snap.Size < spareMinSize {
		f.dropSpare(name)
		return writeAtomicFunc(f.dir, name, "", snap.writeBuffered)
	}
	spare := filepath.Join(f.dir, spareName(name))
	if _, ok := f.spared[name]; ok {
		info, err := overwrite(spare, filepath.Join(f.dir, name), snap.writeBuffered)
		if err == nil {
			f.overwrites++
			return info, nil
		}
		if errors.Is(err, errNoLeases) {
			f.logger.Warn("the output directory's file system grants no file lease; every file is written anew", "dir", f.dir, "err", err)
			f.spares = false
			for n := range f.spared {
				f.dropSpare(n)
			}
			return writeAtomicFunc(f.dir, name, "", snap.writeBuffered)
		}
		f.logger.Debug("writing a new file: the spare cannot be written over", "path", spare, "err", err)
	}
	f.spared[name] = struct{}{} // a spare may exist from here on: dropSpare removes it
	info, err := writeAtomicFunc(f.dir, name, spare, snap.writeBuffered)
	if st, serr := os.Lstat(spare); serr != nil || !st.Mode().IsRegular() {
		f.dropSpare(name) // the job's path held nothing, or not a file
	}
	return info, err
}

// dropSpare removes name's spare, when it may have one.
func (f *files) dropSpare(name string) {
	if _, ok := f.spared[name]; !ok {
		return
	}
	delete(f.spared, name)
	spare := filepath.Join(f.dir, spareName(name))
	if err := os.Remove(spare); err != nil && !errors.Is(err, fs.ErrNotExist) {
		f.logger.Warn("cannot remove a spare targets file", "path", spare, "err", err)
	}
}

// overwrite writes what write writes over the spare at spare and exchanges
// it with path. When it fails before the exchange, path is as it was and
// the spare is removed.
func overwrite(spare, path string, write func(io.Writer) error) (fs.FileInfo, error) {
	info, err := writeSpare(spare, write)
	if err != nil {
		_ = os.Remove(spare) // whatever is there: a spare left half written, a symlink
		return nil, err
	}
	if err := exchange(spare, path); err != nil {
		// path is gone (someone removed it), or this file system cannot
		// exchange after all: a rename, and no spare.
		if err := os.Rename(spare, path); err != nil {
			_ = os.Remove(spare)
			return nil, err
		}
	}
	return info, syncDir(filepath.Dir(path))
}

// writeSpare opens the spare without following a symlink, takes its lease,
// writes it from its start, cuts what the old content had beyond, and
// makes it durable and 0644.
func writeSpare(spare string, write func(io.Writer) error) (_ fs.FileInfo, err error) {
	file, err := openSpare(spare)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := file.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	unlock, err := lease(file)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := write(file); err != nil {
		return nil, err
	}
	end, err := file.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, err
	}
	if err := file.Truncate(end); err != nil {
		return nil, err
	}
	if err := file.Sync(); err != nil {
		return nil, err
	}
	if err := file.Chmod(0o644); err != nil {
		return nil, err
	}
	return file.Stat()
}

// replace renames tmp over path. With keep set, the file path held moves
// to keep instead of being freed, when the file system can exchange two
// names; otherwise it is a rename.
func replace(tmp, path, keep string) error {
	if keep == "" || exchange(tmp, path) != nil {
		return os.Rename(tmp, path)
	}
	if err := os.Rename(tmp, keep); err != nil { // tmp holds the replaced file now
		_ = os.Remove(tmp)
	}
	return nil
}
