package output

import "math"

// entry is one entry of a job's file_sd output, immutable once made: its
// targets and its label set. Its text, rendered when the output is
// written, is its head (appendEntryHead), its labels' text, then entryTail:
//
//	{
//	  "targets": [
//	    "a:1"
//	  ],
//	  "labels": {
//	    "__meta_x": "y"
//	  }
//	}
//
// labels is the label set's compact body (names.go), also its canonical
// key.
type entry struct {
	targets []string // sorted, unique
	labels  string
	size    int32 // of its text
	gone    bool  // taken out of the order: set only by the job's renderer
}

const (
	entryHead = "  {\n    \"targets\": [\n"
	entryMid  = "    ],\n    \"labels\": {"
	entryTail = "}\n  }"
)

// newEntry returns the entry of refs' targets and the label set whose
// compact body is labels and whose text is labelsLen bytes long.
func newEntry(labels string, labelsLen int, refs []targetRef) *entry {
	e := &entry{labels: labels, targets: make([]string, len(refs))}
	for i, t := range refs {
		e.targets[i] = t.addr
	}
	e.size = int32(min(headLen(e.targets)+labelsLen+len(entryTail), math.MaxInt32))
	return e
}

// headLen is the length of appendEntryHead's text for targets.
func headLen(targets []string) int {
	n := len(entryHead) + len(entryMid) + max(len(targets)-1, 0) // the commas
	for _, t := range targets {
		n += len("      ") + quotedLen(t) + len("\n")
	}
	return n
}

// labelsLen is the length of the text of e's labels.
func (e *entry) labelsLen() int { return int(e.size) - headLen(e.targets) - len(entryTail) }

// quotedLen is the length of appendString's encoding of s.
func quotedLen(s string) int { return escapedLen(s) + 2 }

// appendEntryHead appends the text of an entry up to its labels body.
func appendEntryHead(b []byte, targets []string) []byte {
	b = append(b, entryHead...)
	for j, t := range targets {
		b = append(b, "      "...)
		b = appendString(b, t)
		if j < len(targets)-1 {
			b = append(b, ',')
		}
		b = append(b, '\n')
	}
	return append(b, entryMid...)
}
