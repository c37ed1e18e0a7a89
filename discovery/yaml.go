package discovery

import (
	"errors"
	"fmt"

	"gopkg.in/yaml.v3"
)

// LineError is a config error at a line of the YAML file. The config loader
// prefixes it with the file name.
type LineError struct {
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// FieldError is a validation error about one YAML key of a config block;
// Validate methods return it so the loader can point at that key's line.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// Fieldf makes a FieldError for field with a formatted message.
func Fieldf(field, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

// UnmarshalConfig is the body of every config type's UnmarshalYAML: plain
// (a pointer to the config's fields, without its UnmarshalYAML method, with
// the defaults already set) is decoded strictly, then validate runs. A
// validation error is placed at the line of the key it names (FieldError) or
// else at the start of the block.
func UnmarshalConfig(unmarshal func(any) error, plain any, validate func() error) error {
	var node nodeCapture
	if err := unmarshal(&node); err != nil {
		return err
	}
	if err := unmarshal(plain); err != nil {
		var te *yaml.TypeError
		var le *LineError
		if errors.As(err, &te) || errors.As(err, &le) {
			return err // already placed at its line
		}
		// An error from a field's own UnmarshalYAML (a bad duration, say)
		// carries no line: place it at the block.
		return &LineError{Line: node.n.Line, Err: err}
	}
	if validate == nil {
		return nil
	}
	if err := validate(); err != nil {
		return &LineError{Line: KeyLine(node.n, fieldOf(err)), Err: err}
	}
	return nil
}

// nodeCapture keeps the node it is decoded from; a plain *yaml.Node target
// does not survive yaml.v3's v2-style unmarshal callback.
type nodeCapture struct{ n *yaml.Node }

func (c *nodeCapture) UnmarshalYAML(n *yaml.Node) error {
	c.n = n
	return nil
}

func fieldOf(err error) string {
	var fe *FieldError
	if errors.As(err, &fe) {
		return fe.Field
	}
	return ""
}

// KeyLine returns the line of key in mapping node n, or n's own line when
// key is empty or absent.
func KeyLine(n *yaml.Node, key string) int {
	if n.Kind == yaml.MappingNode && key != "" {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				return n.Content[i].Line
			}
		}
	}
	return n.Line
}
