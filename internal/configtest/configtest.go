// Package configtest runs the table test of a mechanism's testdata: every
// testdata/*.yml decoded, each *.good.yml to the config its table names,
// each *.bad.yml to the exact error its table names.
package configtest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// Table is what the files of testdata/*.yml decode to, by file name.
type Table[T any] struct {
	Good map[string]T      // the value a file decodes to
	Bad  map[string]string // the error a *.bad.yml fails with
	// Decode decodes a file's bytes.
	Decode func(t *testing.T, data []byte) (T, error)
	// Show prints a value in a failure (nil: %+v).
	Show func(T) string
	// Then, when set, checks more of a good file once it decoded as Good
	// says.
	Then func(t *testing.T, data []byte, got T)
}

// Run runs a subtest per file of testdata/*.yml; every file must be in one
// of the tables, and every entry of them a file.
func (tb Table[T]) Run(t *testing.T) {
	t.Helper()
	files, err := filepath.Glob("testdata/*.yml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(tb.Good)+len(tb.Bad) {
		t.Fatalf("testdata has %d files, the tables %d", len(files), len(tb.Good)+len(tb.Bad))
	}
	show := tb.Show
	if show == nil {
		show = func(v T) string { return fmt.Sprintf("%+v", v) }
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tb.Decode(t, data)
			if strings.HasSuffix(name, ".bad.yml") {
				want, ok := tb.Bad[name]
				if !ok {
					t.Fatalf("no expected error for %s", name)
				}
				if err == nil || err.Error() != want {
					t.Fatalf("error = %v, want %q", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want, ok := tb.Good[name]
			if !ok {
				t.Fatalf("no expected config for %s", name)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got %s\nwant %s", show(got), show(want))
			}
			if tb.Then != nil {
				tb.Then(t, data, got)
			}
		})
	}
}

// Strict decodes data into v as the config loader does: yaml.v3, unknown
// keys rejected.
func Strict(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	return dec.Decode(v)
}
