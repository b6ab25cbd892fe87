package objectives

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// torchGolden is testdata/torch_golden.json, written by
// testdata/torch_reference.py: the same formulas in PyTorch (float64,
// F.logsigmoid, autograd). Regenerate with
// /usr/bin/python3 objectives/testdata/torch_reference.py.
type torchGolden struct {
	TorchVersion string `json:"torch_version"`
	DPO          []struct {
		Name    string `json:"name"`
		Options struct {
			Beta    float64 `json:"beta"`
			NLLCoef float64 `json:"nll_coef"`
			NLLNorm string  `json:"nll_norm"`
		} `json:"options"`
		Inputs struct {
			PolicyChosen      []float64 `json:"policy_chosen"`
			PolicyRejected    []float64 `json:"policy_rejected"`
			ReferenceChosen   []float64 `json:"reference_chosen"`
			ReferenceRejected []float64 `json:"reference_rejected"`
			PolicyChosenAll   []float64 `json:"policy_chosen_all"`
			ChosenTokens      []int     `json:"chosen_tokens"`
		} `json:"inputs"`
		Want struct {
			Loss                float64   `json:"loss"`
			DPOLoss             float64   `json:"dpo_loss"`
			NLLLoss             float64   `json:"nll_loss"`
			RewardsChosen       float64   `json:"rewards_chosen"`
			RewardsRejected     float64   `json:"rewards_rejected"`
			Margin              float64   `json:"margin"`
			Accuracy            float64   `json:"accuracy"`
			LogpsChosen         float64   `json:"logps_chosen"`
			LogpsRejected       float64   `json:"logps_rejected"`
			GradPolicyChosen    []float64 `json:"grad_policy_chosen"`
			GradPolicyRejected  []float64 `json:"grad_policy_rejected"`
			GradPolicyChosenAll []float64 `json:"grad_policy_chosen_all"`
		} `json:"want"`
	} `json:"dpo"`
	BradleyTerry []struct {
		Name    string `json:"name"`
		Options struct {
			CenteringCoef float64 `json:"centering_coef"`
			Weighting     string  `json:"weighting"`
		} `json:"options"`
		Rewards []float64 `json:"rewards"`
		Pairs   []struct {
			Better int     `json:"better"`
			Worse  int     `json:"worse"`
			Margin float64 `json:"margin"`
			Row    int     `json:"row"`
		} `json:"pairs"`
		Want struct {
			Loss       float64   `json:"loss"`
			BTLoss     float64   `json:"bt_loss"`
			Centering  float64   `json:"centering"`
			Accuracy   float64   `json:"accuracy"`
			MeanMargin float64   `json:"mean_margin"`
			Grad       []float64 `json:"grad"`
		} `json:"want"`
	} `json:"bradley_terry"`
}

func loadTorchGolden(t *testing.T) torchGolden {
	t.Helper()
	path := filepath.Join("testdata", "torch_golden.json")
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	var g torchGolden
	require.NoError(t, json.Unmarshal(raw, &g), "parse %s", path)
	require.NotEmpty(t, g.DPO, "%s has no DPO cases", path)
	require.NotEmpty(t, g.BradleyTerry, "%s has no Bradley-Terry cases", path)
	return g
}

func TestDPOMatchesTorch(t *testing.T) {
	g := loadTorchGolden(t)
	for _, tc := range g.DPO {
		t.Run(tc.Name, func(t *testing.T) {
			norm, err := ParseNLLNorm(tc.Options.NLLNorm)
			require.NoError(t, err)
			d, err := NewDPO(DPOOptions{Beta: tc.Options.Beta, NLLCoef: tc.Options.NLLCoef, NLLNorm: norm})
			require.NoError(t, err)
			in := tc.Inputs
			got, err := d.Eval(DPOBatch{
				PolicyChosen: in.PolicyChosen, PolicyRejected: in.PolicyRejected,
				ReferenceChosen: in.ReferenceChosen, ReferenceRejected: in.ReferenceRejected,
				PolicyChosenAll: in.PolicyChosenAll, ChosenTokens: in.ChosenTokens,
			})
			require.NoError(t, err)
			w := tc.Want
			assertClose(t, w.Loss, got.Loss, "loss")
			assertClose(t, w.DPOLoss, got.DPOLoss, "dpo_loss")
			assertClose(t, w.NLLLoss, got.NLLLoss, "nll_loss")
			assertClose(t, w.RewardsChosen, got.RewardsChosen, "rewards_chosen")
			assertClose(t, w.RewardsRejected, got.RewardsRejected, "rewards_rejected")
			assertClose(t, w.Margin, got.Margin, "margin")
			assert.Equal(t, w.Accuracy, got.Accuracy, "accuracy")
			assertClose(t, w.LogpsChosen, got.LogpsChosen, "logps_chosen")
			assertClose(t, w.LogpsRejected, got.LogpsRejected, "logps_rejected")
			require.Len(t, got.GradPolicyChosen, len(w.GradPolicyChosen))
			for i := range w.GradPolicyChosen {
				assertClose(t, w.GradPolicyChosen[i], got.GradPolicyChosen[i], fmt.Sprintf("grad policy_chosen[%d]", i))
				assertClose(t, w.GradPolicyRejected[i], got.GradPolicyRejected[i], fmt.Sprintf("grad policy_rejected[%d]", i))
				assertClose(t, w.GradPolicyChosenAll[i], got.GradPolicyChosenAll[i], fmt.Sprintf("grad policy_chosen_all[%d]", i))
			}
		})
	}
}

func TestBradleyTerryMatchesTorch(t *testing.T) {
	g := loadTorchGolden(t)
	for _, tc := range g.BradleyTerry {
		t.Run(tc.Name, func(t *testing.T) {
			bt, err := NewBradleyTerry(BTOptions{
				CenteringCoef: tc.Options.CenteringCoef,
				Weighting:     PairWeighting(tc.Options.Weighting),
			})
			require.NoError(t, err)
			pairs := make([]Pair, len(tc.Pairs))
			for i, p := range tc.Pairs {
				pairs[i] = Pair{Better: p.Better, Worse: p.Worse, Margin: p.Margin, Row: p.Row}
			}
			got, err := bt.Eval(tc.Rewards, pairs)
			require.NoError(t, err)
			w := tc.Want
			assertClose(t, w.Loss, got.Loss, "loss")
			assertClose(t, w.BTLoss, got.BTLoss, "bt_loss")
			assertClose(t, w.Centering, got.Centering, "centering")
			assert.Equal(t, w.Accuracy, got.Accuracy, "accuracy")
			assertClose(t, w.MeanMargin, got.MeanMargin, "mean_margin")
			require.Len(t, got.Grad, len(w.Grad))
			for k := range w.Grad {
				assertClose(t, w.Grad[k], got.Grad[k], fmt.Sprintf("grad rewards[%d]", k))
			}
		})
	}
}
