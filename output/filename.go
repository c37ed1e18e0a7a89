package output

import (
	"crypto/sha256"
	"encoding/hex"
)

// maxFileName bounds a targets file's name. Linux allows 255 bytes, and
// the temp file writeAtomic makes next to it adds 16 (".", ".tmp-" and up
// to 10 digits); escaping can triple a job name (every non-ASCII byte
// becomes %XX). 200 leaves room.
const maxFileName = 200

// shortName returns the file name of a job whose escaped name is too long:
// the escaped name cut (never inside a %XX), "~" and 16 hex digits of the
// job name's SHA-256, then ".json". Escaped names never hold a raw "~", so
// it cannot be another job's name, and two long names with the same start
// differ by their hash.
func shortName(job, escaped string) string {
	sum := sha256.Sum256([]byte(job))
	cut := maxFileName - len("~") - 16 - len(".json")
	for i := cut - 2; i < cut; i++ {
		if i >= 0 && escaped[i] == '%' {
			cut = i
			break
		}
	}
	return escaped[:cut] + "~" + hex.EncodeToString(sum[:8]) + ".json"
}
