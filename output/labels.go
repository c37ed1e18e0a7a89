package output

// The consuming Prometheus sets __meta_filepath on every target it reads
// through file_sd_configs, and __meta_url on every target it reads through
// http_sd_configs, overwriting a value the target carries. So a source's
// own values of these labels (file_sd's path of the input file, http_sd's
// URL) reach the consumer under sdhub-owned names instead, and the relabel
// rules `sdhub generate prometheus-config` prepends to each job put them
// back where native SD has them.
const (
	// FilepathLabel carries a source's __meta_filepath in sdhub's output.
	FilepathLabel = "__meta_sdhub_filepath"
	// URLLabel carries a source's __meta_url in sdhub's output.
	URLLabel = "__meta_sdhub_url"
)

// outputLabelName is the name a source's label has in sdhub's output:
// __meta_filepath and __meta_url are renamed, every other name is kept.
// A source's own label of one of sdhub's names is not carried (""): the
// output would hold the name twice.
func outputLabelName(name string) string {
	switch name {
	case "__meta_filepath":
		return FilepathLabel
	case "__meta_url":
		return URLLabel
	case FilepathLabel, URLLabel:
		return ""
	}
	return name
}
