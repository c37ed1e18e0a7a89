package output

// Labels that the consuming Prometheus sets itself on every target it reads
// from sdhub overwrite a source's labels of the same name: its file_sd sets
// __meta_filepath (to sdhub's file), its http_sd __meta_url (to sdhub's
// endpoint). sdhub's output therefore carries a source's value of such a
// label under a name of its own, and `sdhub generate prometheus-config`
// prepends to the consuming job the relabelling that puts it back, so the
// job's relabel_configs see what native SD gave them.
const (
	sdhubFilepathLabel = "__meta_sdhub_filepath"
	sdhubURLLabel      = "__meta_sdhub_url"
)

// outputLabelName is the name under which the output carries a source's
// label.
func outputLabelName(name string) string {
	switch name {
	case "__meta_filepath":
		return sdhubFilepathLabel
	case "__meta_url":
		return sdhubURLLabel
	}
	return name
}
