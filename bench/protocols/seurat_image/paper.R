# The `paper` evaluation protocol: the post-processing of the ACTIVA authors' notebook
# (SindiLab/Tutorials, SingleCell-R/ACTIVA_pbmc68K_model.Rmd, lines 108-147; paper section 4.3),
# run on files so that R needs no anndata:
#   per object FindVariableFeatures(selection.method = "vst", nfeatures = 3000)   (Rmd 108-118)
#   FindIntegrationAnchors(object.list, dims = 1:30, anchor.features = 3000)      (Rmd 123-129)
#   IntegrateData(dims = 1:30); DefaultAssay <- "integrated"                       (Rmd 131-134)
#   ScaleData; RunPCA (50 PCs, used as 1:50)                                       (Rmd 144-147, 165)
# The notebook calls no NormalizeData: its objects hold the values of the h5ad files it loaded.
# normalize = "none" keeps that (the values given are used as they are); "LogNormalize" calls
# Seurat's NormalizeData() per object first.
#
# Usage: Rscript paper.R WORK. Reads WORK/input/: genes.txt (one gene a line), objects.csv (name, file,
# n_cells), params.csv (key, value), one MatrixMarket file per object (genes x cells). Writes
# WORK/output/: pcs.csv (object, cell index in the object, PC_1..PC_n), record.csv (key, value: tool
# versions and the parameters used), features.txt (the integration features).
args <- commandArgs(trailingOnly = TRUE)
work <- if (length(args) >= 1) args[1] else "/work"
inp <- file.path(work, "input")
out <- file.path(work, "output")
dir.create(out, showWarnings = FALSE)
suppressPackageStartupMessages({
  library(Matrix)
  library(Seurat)
})

params <- read.csv(file.path(inp, "params.csv"), stringsAsFactors = FALSE, colClasses = "character")
par <- setNames(params$value, params$key)
num <- function(k) as.numeric(par[[k]])
objects <- read.csv(file.path(inp, "objects.csv"), stringsAsFactors = FALSE)
genes <- readLines(file.path(inp, "genes.txt"))
seed <- num("seed")
set.seed(seed)

object.list <- lapply(seq_len(nrow(objects)), function(i) {
  m <- as(readMM(file.path(inp, objects$file[i])), "CsparseMatrix")
  stopifnot(nrow(m) == length(genes), ncol(m) == objects$n_cells[i])
  rownames(m) <- genes
  colnames(m) <- sprintf("o%d_%d", i, seq_len(ncol(m)) - 1L)
  obj <- CreateSeuratObject(counts = m, project = objects$name[i])
  if (par[["normalize"]] == "LogNormalize") {
    obj <- NormalizeData(obj, normalization.method = "LogNormalize", verbose = FALSE)
  } else if (par[["normalize"]] != "none") {
    stop("unknown normalize: ", par[["normalize"]])
  }
  FindVariableFeatures(obj, selection.method = "vst", nfeatures = num("nfeatures"), verbose = FALSE)
})

dims <- seq_len(num("dims"))
anchors <- FindIntegrationAnchors(
  object.list = object.list, dims = dims, anchor.features = num("anchor_features"),
  k.filter = num("k_filter"), verbose = FALSE
)
integrated <- IntegrateData(anchorset = anchors, dims = dims, k.weight = num("k_weight"), verbose = FALSE)
DefaultAssay(integrated) <- "integrated"
integrated <- ScaleData(integrated, verbose = FALSE)
integrated <- RunPCA(integrated, npcs = num("npcs"), seed.use = seed, verbose = FALSE)

emb <- Embeddings(integrated, reduction = "pca")
which <- as.integer(sub("^o([0-9]+)_.*$", "\\1", rownames(emb)))
cell <- as.integer(sub("^o[0-9]+_", "", rownames(emb)))
pcs <- data.frame(object = objects$name[which], cell = cell, emb, check.names = FALSE)
write.csv(pcs, file.path(out, "pcs.csv"), row.names = FALSE)
features <- rownames(integrated[["integrated"]])
writeLines(features, file.path(out, "features.txt"))
record <- c(
  Seurat = as.character(packageVersion("Seurat")),
  SeuratObject = as.character(packageVersion("SeuratObject")),
  Matrix = as.character(packageVersion("Matrix")),
  R = paste(R.version$major, R.version$minor, sep = "."),
  n_integration_features = length(features),
  n_pcs = ncol(emb),
  par
)
write.csv(data.frame(key = names(record), value = unname(record)), file.path(out, "record.csv"), row.names = FALSE)
cat("paper protocol: Seurat", as.character(packageVersion("Seurat")), "-", nrow(emb), "cells,",
    ncol(emb), "PCs,", length(features), "integration features\n")
