package file

import (
	"io"

	"github.com/cespare/xxhash/v2"
)

// A JSON file is read in windows of a few hundred kilobytes rather than
// whole: a 50 MB file then costs its decoded groups, not 50 MB more for
// its bytes while they are decoded.

// defaultWindow is the size of the window a file is read through; it grows
// to hold an element larger than it.
const defaultWindow = 256 << 10

// window is a reader's view of the part of a file being decoded: buf[pos:end]
// is read and not consumed yet. Every byte read is also written to sum.
type window struct {
	rd       io.Reader
	buf      []byte
	pos, end int
	eof      bool
	sum      *xxhash.Digest
}

// more reads more input after buf[pos:end], which it moves to the start of
// buf, growing buf when it is full. It returns false at the end of input.
func (w *window) more() (bool, error) {
	if w.eof {
		return false, nil
	}
	if w.pos > 0 {
		w.end = copy(w.buf, w.buf[w.pos:w.end])
		w.pos = 0
	}
	if w.end == len(w.buf) {
		w.buf = append(w.buf, make([]byte, len(w.buf))...)
	}
	for {
		n, err := w.rd.Read(w.buf[w.end:])
		if n > 0 {
			_, _ = w.sum.Write(w.buf[w.end : w.end+n])
			w.end += n
		}
		switch {
		case err == io.EOF:
			w.eof = true
			return n > 0, nil
		case err != nil:
			return false, err
		case n > 0:
			return true, nil
		}
	}
}

// ws skips white space, reading more as needed. It returns false at the
// end of input.
func (w *window) ws() (bool, error) {
	for {
		s := scanner{b: w.buf[:w.end], pos: w.pos}
		s.ws()
		w.pos = s.pos
		if w.pos < w.end {
			return true, nil
		}
		if ok, err := w.more(); !ok {
			return false, err
		}
	}
}

// value returns the next JSON value's bytes, checked by the scanner and
// valid until the next call, or errSyntax. A value is complete when a
// byte follows it, or the input ends.
func (w *window) value() ([]byte, error) {
	for {
		s := scanner{b: w.buf[:w.end], pos: w.pos}
		if s.value(1) && (s.pos < w.end || w.eof) {
			b := w.buf[w.pos:s.pos]
			w.pos = s.pos
			return b, nil
		}
		if w.eof {
			return nil, errSyntax
		}
		if _, err := w.more(); err != nil {
			return nil, err
		}
	}
}

// elements reads a JSON file_sd file from w and calls each with the bytes
// of every element of its top-level array, in order, until each returns
// false. It checks the whole file's syntax as encoding/json's scanner does
// and returns errSyntax where that fails, or the read error. A top-level null
// has no element.
func (w *window) elements(each func(b []byte) bool) error {
	if ok, err := w.ws(); !ok {
		return orSyntax(err)
	}
	switch w.buf[w.pos] {
	case 'n':
		b, err := w.value()
		if err != nil {
			return err
		}
		if string(b) != "null" {
			return errSyntax
		}
	case '[':
		w.pos++
		if ok, err := w.ws(); !ok {
			return orSyntax(err)
		}
		if w.buf[w.pos] == ']' {
			w.pos++
			break
		}
	elements:
		for {
			if ok, err := w.ws(); !ok {
				return orSyntax(err)
			}
			b, err := w.value()
			if err != nil {
				return err
			}
			if !each(b) {
				return nil
			}
			if ok, err := w.ws(); !ok {
				return orSyntax(err)
			}
			switch w.buf[w.pos] {
			case ',':
				w.pos++
			case ']':
				w.pos++
				break elements
			default:
				return errSyntax
			}
		}
	default:
		return errSyntax
	}
	if ok, err := w.ws(); ok || err != nil { // something after the value
		return orSyntax(err)
	}
	return nil
}

// orSyntax is err, or errSyntax when it is nil: the input ended early.
func orSyntax(err error) error {
	if err == nil {
		return errSyntax
	}
	return err
}
