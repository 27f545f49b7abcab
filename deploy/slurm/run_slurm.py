"""Extract many runs with workers submitted as SLURM jobs by dask-jobqueue.

python deploy/slurm/run_slurm.py --jobs 8 --maps difumo64.nii.gz --out s.zarr IMG...
"""

from __future__ import annotations

import argparse


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("imgs", nargs="+")
    parser.add_argument("--maps", required=True)
    parser.add_argument("--mask", default=None)
    parser.add_argument("--out", required=True)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--pbs", action="store_true", help="PBS instead of SLURM")
    args = parser.parse_args(argv)

    from dask_jobqueue import PBSCluster, SLURMCluster
    from distributed import Client

    from daskmasker import NiftiMapsMasker, run_batch

    cluster = (PBSCluster if args.pbs else SLURMCluster)()  # configured by jobqueue.yaml
    cluster.scale(jobs=args.jobs)
    with Client(cluster) as client:
        print("dashboard:", client.dashboard_link)
        masker = NiftiMapsMasker(args.maps, mask_img=args.mask, standardize="zscore_sample")
        result = run_batch(masker, args.imgs, args.out, client=client, progress=True)
        print(result)
    cluster.close()


if __name__ == "__main__":
    main()
