"""Run under torchrun by tests/test_distributed.py: every rank collects its block into one store."""

import sys


def main(model_dir: str, out: str) -> None:
    import torch.distributed as dist

    import interp

    dist.init_process_group("gloo")
    model = interp.load_model(model_dir, device="cpu")
    prompts = [f"prompt {i}: " + "word " * (i % 7) for i in range(23)]
    acts = interp.collect(model, prompts, ["resid_post", "mlp_out"], out=out, batch_size=3, shard_size=3,
                          progress=False)
    assert len(acts) == 23
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:3])
