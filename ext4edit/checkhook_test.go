package ext4edit

import (
	"errors"
	"fmt"
	"strings"

	"github.com/banger/ext4kit/internal/testimg"
)

// Every image a test judges with e2fsck is judged by Check too.
func init() { testimg.CheckHook = checkHook }

// checkHook is internal/checkhook's Run, which this package's tests
// cannot import (it imports ext4edit).
func checkHook(img string) (bool, string, error) {
	rep, err := Check(img, nil)
	if errors.Is(err, ErrUnsupportedFeature) {
		return false, "", fmt.Errorf("%w: %w", testimg.ErrCheckUnsupported, err)
	}
	if err != nil {
		return false, "", err
	}
	var lines []string
	for _, p := range rep.Problems {
		lines = append(lines, p.String())
	}
	return rep.Clean, strings.Join(lines, "\n"), nil
}
