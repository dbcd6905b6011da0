package imagepull

import (
	"fmt"

	"github.com/banger/ext4kit/ext4edit"
)

// FinalizeStep is one edit of the finalize phase, made in the open image's
// session (it must not Close the image).
type FinalizeStep func(*ext4edit.Image) error

// Finalize runs steps in order on one open image, stopping at the first
// error. Nothing is committed here: the caller's Close (or Sync) commits
// every step at once.
func Finalize(img *ext4edit.Image, steps ...FinalizeStep) error {
	for _, step := range steps {
		if step == nil {
			continue
		}
		if err := step(img); err != nil {
			return fmt.Errorf("finalize: %w", err)
		}
	}
	return nil
}

// OwnershipStep applies table (ApplyOwnership). A nil or empty table is a
// no-op.
func OwnershipStep(table OwnershipTable) FinalizeStep {
	return func(img *ext4edit.Image) error {
		if len(table) == 0 {
			return nil
		}
		return ApplyOwnership(img, table)
	}
}

// GuestAgentsStep installs the guest assets (InjectGuestAgents).
func GuestAgentsStep(opts InjectOptions) FinalizeStep {
	return func(img *ext4edit.Image) error {
		return InjectGuestAgents(img, opts)
	}
}

// DefaultFinalize is the pipeline's finalize phase: ApplyOwnership, then
// InjectGuestAgents, on one open image. The agent binary is validated
// before either step writes, so a bad agent leaves the image unchanged.
// Tests and callers that do not want a real agent compose their own steps
// with Finalize.
func DefaultFinalize(table OwnershipTable, opts InjectOptions) FinalizeStep {
	return func(img *ext4edit.Image) error {
		agent, err := openAgent(opts)
		if err != nil {
			return fmt.Errorf("inject guest agents: %w", err)
		}
		agent.f.Close()
		return Finalize(img, OwnershipStep(table), GuestAgentsStep(opts))
	}
}
