package swarm

import (
	"testing"

	"github.com/prometheus/common/model"
)

// TestCollidingLabelKeysAreDeterministic: Docker label keys that sanitise
// to the same label name give the same value every time (the last key in
// sorted order), so the job's file does not change between refreshes.
func TestCollidingLabelKeysAreDeterministic(t *testing.T) {
	labels := map[string]string{"com.x": "dot", "com-x": "dash", "com_x": "under", "com/x": "slash"}
	for i := 0; i < 100; i++ {
		ls := model.LabelSet{}
		addLabels(ls, "__meta_dockerswarm_service_label_", labels)
		// sorted: com-x, com.x, com/x, com_x
		if got := ls["__meta_dockerswarm_service_label_com_x"]; got != "under" || len(ls) != 1 {
			t.Fatalf("run %d: labels %v, want only com_x=under", i, ls)
		}
	}
}
