//go:build !linux

package output

import (
	"errors"
	"os"
)

func sparesSupported(string) bool { return false }

func openSpare(string) (*os.File, error) { return nil, errors.ErrUnsupported }

func lease(*os.File) (func(), error) { return nil, errors.ErrUnsupported }

func exchange(string, string) error { return errors.ErrUnsupported }
