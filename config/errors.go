package config

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/sdhub/sdhub/discovery"
)

// yamlLine matches the "line N: " that yaml.v3 puts before a message.
var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// fileError puts filename and the line in front of a decoding error, one
// line per problem: "prometheus.yml:12: unknown field ...".
func fileError(filename string, err error) error {
	var le *discovery.LineError
	var te *yaml.TypeError
	switch {
	case errors.As(err, &te):
		msgs := make([]string, 0, len(te.Errors))
		for _, e := range te.Errors {
			msgs = append(msgs, locate(filename, friendlyTypes(e)))
		}
		return &Error{Msg: strings.Join(msgs, "\n"), Err: err}
	case errors.As(err, &le):
		return &Error{Msg: fmt.Sprintf("%s:%d: %s", filename, le.Line, le.Err), Err: err}
	default:
		return &Error{Msg: locate(filename, err.Error()), Err: err}
	}
}

func locate(filename, msg string) string {
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("%s:%s: %s", filename, m[1], m[2])
	}
	return fmt.Sprintf("%s: %s", filename, strings.TrimPrefix(msg, "yaml: "))
}

// typeInMsg matches the Go type yaml.v3 names in "field x not found in type consul.plain".
var typeInMsg = regexp.MustCompile(`not found in type ([a-z0-9]+)\.[A-Za-z0-9_]+$`)

// friendlyTypes names the YAML section instead of the Go type in an
// unknown-field message.
func friendlyTypes(msg string) string {
	if i := strings.Index(msg, " in type struct { Targets []string "); i >= 0 {
		return msg[:i] + " in static_configs" // targetgroup.Group's anonymous shape
	}
	m := typeInMsg.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	if section, ok := sectionOfPackage()[m[1]]; ok {
		return strings.TrimSuffix(msg, m[0]) + "not found in " + section
	}
	return msg
}

// sectionOfPackage maps a Go package name to the YAML section its config
// types decode.
func sectionOfPackage() map[string]string {
	out := map[string]string{"targetgroup": "static_configs"}
	for _, m := range Native {
		out[packageName(m)] = m.Key()
	}
	return out
}

// Error is a config error whose text names the file and line.
type Error struct {
	Msg string
	Err error
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Err }
