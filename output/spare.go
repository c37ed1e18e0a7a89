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
// writeback, and the replaced file's pages and blocks to free. Writing a
// 27 MB file, fsync and rename included, took 26-148 ms into a new file on
// ext4 here and 10-24 ms over the spare, whose pages are in the page cache
// and whose blocks are allocated. On two cores that CPU is what a change
// waits for while Consul answers and sdhub reads the streams a node's
// change wakes.
//
// A reader never sees a part: the job's file is exchanged with the spare
// (renameat2 RENAME_EXCHANGE) once the spare holds the new bytes, fsynced.
// The spare is written over only when nobody has it open: a reader that
// opened the job's file before it became the spare, and is still reading,
// holds it open, and sdhub then writes a new file as it always did. The
// kernel says so without a race: a write lease (fcntl F_SETLEASE) is granted
// only on a file no one else has open, and while sdhub holds it anyone who
// opens the file waits. Nor is it written over when it has another name (a
// hard link someone made to the job's file). Spares are used only on local
// file systems (ext2/3/4, xfs, btrfs, f2fs, tmpfs), where every reader is on
// this kernel and the lease sees it.

// spareMinSize is the size from which a job's file keeps a spare: below it
// a new file costs little, and a spare would double the directory's files.
const spareMinSize = 1 << 20

// spareName is the spare's name for the job file name: a dot file ending in
// ".spare", which no consumer glob matches and tempPattern does.
func spareName(name string) string { return "." + name + ".spare" }

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
		delete(f.spared, name)
		f.logger.Debug("writing a new file: the spare cannot be written over", "path", spare, "err", err)
	}
	info, err := writeAtomicFunc(f.dir, name, spare, snap.writeBuffered)
	if err == nil {
		if _, serr := os.Lstat(spare); serr == nil {
			f.spared[name] = struct{}{}
		}
	}
	return info, err
}

// dropSpare removes name's spare, when it has one.
func (f *files) dropSpare(name string) {
	if _, ok := f.spared[name]; !ok {
		return
	}
	delete(f.spared, name)
	if err := os.Remove(filepath.Join(f.dir, spareName(name))); err != nil && !errors.Is(err, fs.ErrNotExist) {
		f.logger.Warn("cannot remove a spare targets file", "path", filepath.Join(f.dir, spareName(name)), "err", err)
	}
}

// overwrite writes over the spare at spare what write writes and exchanges
// it with path. On any failure path is as it was and the spare is removed.
func overwrite(spare, path string, write func(io.Writer) error) (_ fs.FileInfo, err error) {
	file, err := os.OpenFile(spare, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(spare)
		}
	}()
	unlock, err := lease(file)
	if err != nil {
		_ = file.Close()
		return nil, err
	}
	info, err := writeOver(file, write)
	unlock()
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if err = exchange(spare, path); err != nil {
		// path is gone (someone removed it), or this file system cannot
		// exchange after all: a rename, and no spare.
		if err = os.Rename(spare, path); err != nil {
			return nil, err
		}
	}
	return info, syncDir(filepath.Dir(path))
}

// writeOver writes file from its start, cuts what the old content had
// beyond, and makes it durable and 0644.
func writeOver(file *os.File, write func(io.Writer) error) (fs.FileInfo, error) {
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
