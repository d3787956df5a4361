"""Export a run's snapshots as VTK files ParaView opens, written by meshio.

Per site and snapshot, one ``<site>_t<index>.vtu`` (VTK unstructured grid,
binary): the lattice points are the mesh vertices (coordinates in µm) joined
by quadrilaterals (2-D) or hexahedra (3-D), and every snapshot variable is
point data: each field, cells per point by phenotype (``epithelial_cells``,
``mesenchymal_cells``), the clone with most cells (``main_clone``, -1 none),
stromal agents and ``vessel_state``. Per site, ``<site>.pvd`` lists the files
with their simulated times (h), so ParaView opens the site as a time series.
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from metacoop.io.atomic import atomic_write
from metacoop.io.results import Result


def grid_mesh(shape: tuple[int, ...], spacing_um: float) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """Vertices (one per lattice point, C order of ``shape``) and the quads or hexahedra joining them."""
    axes = [np.arange(n) * spacing_um for n in shape]
    mesh = np.meshgrid(*axes, indexing="ij")
    if len(shape) == 2:
        ny, nx = shape
        points = np.column_stack([mesh[1].ravel(), mesh[0].ravel(), np.zeros(ny * nx)])
        i = np.arange(ny * nx).reshape(ny, nx)
        quads = np.stack([i[:-1, :-1], i[:-1, 1:], i[1:, 1:], i[1:, :-1]], axis=-1).reshape(-1, 4)
        return points, [("quad", quads)]
    nz, ny, nx = shape
    points = np.column_stack([mesh[2].ravel(), mesh[1].ravel(), mesh[0].ravel()])
    i = np.arange(nz * ny * nx).reshape(nz, ny, nx)
    a, b = i[:-1], i[1:]
    hexes = np.stack(
        [
            a[:, :-1, :-1],
            a[:, :-1, 1:],
            a[:, 1:, 1:],
            a[:, 1:, :-1],
            b[:, :-1, :-1],
            b[:, :-1, 1:],
            b[:, 1:, 1:],
            b[:, 1:, :-1],
        ],
        axis=-1,
    ).reshape(-1, 8)
    return points, [("hexahedron", hexes)]


def export_vtk(result: Result, out_dir: str | Path) -> list[Path]:
    """Write every snapshot of every site as VTU files plus one PVD time series per site; return the paths."""
    import meshio

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for site in result.fields.children:
        ds = result.fields[site].to_dataset()
        spatial = [d for d in ("z", "y", "x") if d in ds.dims]
        shape = tuple(ds.sizes[d] for d in spatial)
        points, cells = grid_mesh(shape, float(ds.attrs.get("spacing_um", 1.0)))
        times = ds["time"].values
        entries = []
        for k, t in enumerate(times):
            data = {}
            for name, var in ds.data_vars.items():
                a = var.isel(time=k).values if "time" in var.dims else var.values
                data[name] = np.ascontiguousarray(a.reshape(-1)).astype(
                    np.float64 if a.dtype.kind == "f" else np.int32
                )
            path = out / f"{site}_t{k:04d}.vtu"
            mesh = meshio.Mesh(points, cells, point_data=data)
            atomic_write(path, lambda tmp, m=mesh: meshio.write(str(tmp), m, file_format="vtu"))
            written.append(path)
            entries.append(f'    <DataSet timestep="{float(t):g}" part="0" file={quoteattr(path.name)}/>')
        pvd = out / f"{site}.pvd"
        # the PVD index is a few lines of XML naming the VTU files meshio wrote (meshio has no PVD writer)
        text = "\n".join(
            [
                '<?xml version="1.0"?>',
                '<VTKFile type="Collection" version="0.1">',
                "  <Collection>",
                *entries,
                "  </Collection>",
                "</VTKFile>",
                "",
            ]
        )
        atomic_write(pvd, lambda tmp, s=text: Path(tmp).write_text(s, encoding="utf-8"))
        written.append(pvd)
    return written
