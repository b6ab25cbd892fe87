-- The verifier's verdict on each rejection-sampling candidate (sampling.verify): NULL when
-- the candidate was not checked, false when it disagreed with the prompt's ground truth and
-- so could not be selected. It answers "why was this sample not kept?" next to the reward.

ALTER TABLE sampling_candidates ADD COLUMN verified boolean;
