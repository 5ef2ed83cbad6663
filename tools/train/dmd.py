"""dmd.py - distribution matching distillation on the model's own rollouts (train_dit.py --dmd).

Self-Forcing trains its causal generator on its own rollouts with DMD (Yin et al. 2024; Self-Forcing's
model/dmd.py): the generator's samples are noised, a frozen teacher and a critic (trained on the
generator's samples) both predict x0, and the generator moves its samples along the difference - the
gradient of the reverse KL between its distribution and the teacher's. Unlike regression to the game's
frames after a drifted context (--rollout-ctx, which collapses this model to the mean frame), the
target is a distribution, so an unpredictable detail is drawn sharp instead of averaged.

Here (tools/train/README.md, "DMD"):
  * generator = the model being trained, teacher = a frozen copy of the starting point (--init-from),
    critic = a trained copy of it; no classifier-free guidance (the engine has none, and the game model
    was never trained without its conditions);
  * a sample is the engine's rollout (train_dit.rollout_context, no gradient) after 1-4 real latent
    frames; the gradient goes through one denoising step per frame, at an exit step k drawn per batch:
    x0_k = x_k - s_k v(x_k), all frames in one forward of [rollout (detached) ; x_k] (a target frame
    sees only context frames before it, as in the rollout itself);
  * teacher and critic score the sample noised to one level per clip, in diffusion-forcing form (the
    noisy clip is its own context);
  * per rollout: one generator update, then --critic-steps updates of the critic's flow loss on the
    detached sample (Self-Forcing's ratio is 5);
  * --dmd-reg W adds W x the ordinary diffusion-forcing loss on a batch of the game's frames to the
    generator's loss: an anchor to the data (DMD alone drew a periodic texture over the forest within
    140 updates, tools/train/README.md).
"""
import copy

import torch

import common
import torch.nn.functional as F

# noise levels of the score evaluation (Self-Forcing: timesteps 20..980 of 1000)
S_MIN, S_MAX = 0.02, 0.98


def exit_x0(model, b, rolled, n0, k, sample_sig, args, mask, rope, amp):
    """x0 at exit step k of every frame from n0 on, with gradient; frames before n0 are the real ones.
    rolled: rollout_context(..., record_step=k)'s result for the batch b."""
    import train_dit as td
    L = b["x0"].shape[1]
    gen_f = (torch.arange(L, device=b["x0"].device) >= n0)[None, :, None, None, None]
    s = float(sample_sig[k])
    tgt = torch.where(gen_f, rolled["x_step"], b["x0"])
    t_tgt = torch.where(gen_f[:, :, 0, 0, 0], torch.full_like(b["t"][:, :L], 1000 * s), torch.zeros_like(b["t"][:, :L]))
    x = torch.cat([rolled["x"][:, :L].detach(), tgt], 1)
    t = torch.cat([torch.zeros_like(t_tgt), t_tgt], 1)
    v = td.forward_v(model, dict(b, x=x, t=t), args, mask, rope, amp)[:, L:].float()
    return torch.where(gen_f, tgt - s * v, b["x0"]), gen_f


def score_x0(model, b, xs, s, args, mask, rope, amp):
    """x0 predictions of clips xs noised to levels s [B] (diffusion-forcing form: the noisy clip is its
    own context copy, at its level)."""
    import train_dit as td
    L = xs.shape[1]
    t = (1000 * s)[:, None].expand(-1, 2 * L)
    v = td.forward_v(model, dict(b, x=torch.cat([xs, xs], 1), t=t), args, mask, rope, amp)[:, L:].float()
    return xs - s[:, None, None, None, None] * v


def generator_loss(sample, gen_f, teacher_x0, critic_x0):
    """0.5 |x0 - sg(x0 - g)|^2 over the generated frames, g = (critic - teacher) / mean|x0 - teacher|
    per clip (DMD's normaliser): its gradient in x0 is g, the reverse-KL direction."""
    with torch.no_grad():
        w = gen_f.float().expand_as(sample)
        norm = ((sample - teacher_x0).abs() * w).flatten(1).sum(1) / w.flatten(1).sum(1)
        g = (critic_x0 - teacher_x0) / norm.clamp(min=1e-6)[:, None, None, None, None]
        target = sample - g
    m = gen_f.expand_as(sample)
    return 0.5 * F.mse_loss(sample[m], target[m])  # the mean over the generated frames' elements


class DMD:
    """The teacher, the critic and its optimizer beside the generator (train_dit's model)."""

    def __init__(self, model, teacher_weights, teacher_src, args, params_of, make_opt, critic_weights=None,
                 critic_src=None):
        """critic_weights: the critic's start (an exported critic, to continue a run on a new machine);
        default the teacher."""
        import export
        self.teacher = copy.deepcopy(model)
        export.load_dit_weights(self.teacher, teacher_weights, teacher_src)
        self.teacher.eval().requires_grad_(False)
        self.critic = copy.deepcopy(self.teacher).train().requires_grad_(True)
        if critic_weights is not None:
            export.load_dit_weights(self.critic, critic_weights, critic_src)
        if getattr(self.critic, "decoder", None) is not None:
            self.critic.decoder.requires_grad_(False)
        self.critic_params = params_of(self.critic)
        self.critic_lr_ratio = (args.critic_lr or args.lr) / args.lr
        self.opt_c = make_opt(self.critic_params, args.lr * self.critic_lr_ratio)

    def set_lr(self, lr):
        """The critic follows the generator's schedule (warmup, anneal) at --critic-lr / --lr of it."""
        for g in self.opt_c.param_groups:
            g["lr"] = lr * self.critic_lr_ratio

    def step(self, model, opt, params, ds, args, sample_sig, mask, rope, amp, gen, dev):
        """One rollout, one generator update and args.critic_steps critic updates. Returns (generator
        loss, mean critic loss); the generator loss includes --dmd-reg's term."""
        import train_dit as td
        k = int(torch.randint(0, len(sample_sig), (1,), generator=gen, device=dev))
        b, rolled, n0 = td.rollout_batch(model, ds, args, sample_sig, mask, rope, amp, gen, dev, record_step=k)
        sample, gen_f = exit_x0(model, b, rolled, n0, k, sample_sig, args, mask, rope, amp)
        B = sample.shape[0]
        s = S_MIN + (S_MAX - S_MIN) * torch.rand(B, generator=gen, device=dev)
        xs = (1 - s[:, None, None, None, None]) * sample.detach() + s[:, None, None, None, None] * torch.randn(
            sample.shape, generator=gen, device=dev)
        with torch.no_grad():
            self.critic.eval()
            teacher_x0 = score_x0(self.teacher, b, xs, s, args, mask, rope, amp)
            critic_x0 = score_x0(self.critic, b, xs, s, args, mask, rope, amp)
            self.critic.train()
        loss = generator_loss(sample, gen_f, teacher_x0, critic_x0)
        if args.dmd_reg > 0:
            real = td.make_batch(ds, args.batch, args.clip, args, sample_sig, gen, dev)
            loss = loss + args.dmd_reg * td.loss_of(model, real, args, mask, rope, amp)
        common.update(opt, params, loss)
        # the critic learns the generator's distribution: the flow loss on its (detached) samples
        closs = 0.0
        for _ in range(args.critic_steps):
            bc = td.noise_clips(b["base"], sample.detach(), args, sample_sig, gen)
            lc = td.loss_of(self.critic, bc, args, mask, rope, amp, change_weight=1.0)
            common.update(self.opt_c, self.critic_params, lc)
            closs += lc.item() / max(1, args.critic_steps)
        return loss, closs
