# r-nb: a per-cell-type negative-binomial simulator in R, run by scgenbench through its manifest
# (scgenbench.toml). It reads and writes only the work dir, in the plain format of the I/O contract
# (docs/plugins.md, "A model in any language"), so it needs R's Matrix and jsonlite, no anndata:
#
#   Rscript nb.R fit WORK        WORK/train/{counts.mtx,obs.csv,var.csv} + spec.json -> model/ + fit.json
#   Rscript nb.R generate WORK   model/ + spec.json -> generated/{counts.mtx,obs.csv}
#
# Model (the Python `nb` baseline's, generators/baselines.py): within each cell type, every gene's
# training counts get a mean mu and an NB size r by moments (var = mu + mu^2 / r with the unbiased
# sample variance; var <= mu: Poisson; r >= min_dispersion). Generation draws the labels (by the
# training proportions, or the requested count per label), then every gene independently; a cell
# that drew no counts at all is drawn again. With library_size = "sampled", each cell's means are
# scaled by a library size drawn from the training cells of its type, over their mean.
suppressPackageStartupMessages({
  library(Matrix)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 2 || !(args[1] %in% c("fit", "generate"))) {
  stop("usage: Rscript nb.R fit|generate WORKDIR")
}
command <- args[1]
work <- args[2]
spec <- fromJSON(file.path(work, "spec.json"), simplifyVector = TRUE)
params <- spec$params

user_error <- function(message, fix) {
  # a mistake the user can fix: the harness shows it as one line (user_error.json) and exits 2
  writeLines(toJSON(list(message = message, fix = fix), auto_unbox = TRUE), file.path(work, "user_error.json"))
  quit(status = 2)
}

fit <- function() {
  t0 <- proc.time()[["elapsed"]]
  X <- as(readMM(file.path(work, "train", "counts.mtx")), "CsparseMatrix")  # cells x genes
  obs <- read.csv(file.path(work, "train", "obs.csv"), colClasses = "character")
  if (nrow(obs) != nrow(X)) stop("train/obs.csv and train/counts.mtx disagree on the number of cells")
  classes <- as.character(spec$labels)
  labels <- obs$label
  if (any(labels == "")) user_error("r-nb needs cell-type labels", "pass --label-key")
  min_disp <- as.numeric(params$min_dispersion)
  mu <- matrix(0, nrow = length(classes), ncol = ncol(X))
  size <- matrix(Inf, nrow = length(classes), ncol = ncol(X))
  weights <- numeric(length(classes))
  libsizes <- vector("list", length(classes))
  for (k in seq_along(classes)) {
    rows <- which(labels == classes[k])
    n <- length(rows)
    Xk <- X[rows, , drop = FALSE]
    m <- colMeans(Xk)
    ex2 <- colMeans(Xk^2)
    v <- (ex2 - m^2) * (n / max(n - 1, 1))
    excess <- v - m
    r <- ifelse(excess > 0, m^2 / pmax(excess, 1e-12), Inf)
    mu[k, ] <- m
    size[k, ] <- pmax(r, min_disp)
    weights[k] <- n
    libsizes[[k]] <- rowSums(Xk)
  }
  dir.create(file.path(work, "model"), showWarnings = FALSE)
  saveRDS(list(classes = classes, mu = mu, size = size, weights = weights / sum(weights), libsizes = libsizes),
          file.path(work, "model", "nb.rds"))
  seconds <- proc.time()[["elapsed"]] - t0
  writeLines(toJSON(list(train_seconds = seconds, steps = NULL, r_version = R.version.string),
                    auto_unbox = TRUE, null = "null", digits = NA),
             file.path(work, "fit.json"))
  cat(sprintf("r-nb: fit %d cells x %d genes, %d types in %.2fs\n", nrow(X), ncol(X), length(classes), seconds))
}

draw <- function(model, k, n) {
  # n cells of type k: an n x genes matrix of NB (Poisson where size is Inf) draws
  m <- model$mu[k, ]
  s <- model$size[k, ]
  scale <- rep(1, n)
  if (identical(params$library_size, "sampled")) {
    lib <- model$libsizes[[k]]
    scale <- sample(lib, n, replace = TRUE) / mean(lib)
  }
  M <- outer(scale, m)  # n x genes means
  S <- matrix(s, nrow = n, ncol = length(s), byrow = TRUE)
  out <- matrix(0, nrow = n, ncol = length(m))
  pois <- is.infinite(S) & M > 0
  nbm <- !is.infinite(S) & M > 0
  out[pois] <- rpois(sum(pois), M[pois])
  out[nbm] <- rnbinom(sum(nbm), size = S[nbm], mu = M[nbm])
  out
}

generate <- function() {
  t0 <- proc.time()[["elapsed"]]
  model <- readRDS(file.path(work, "model", "nb.rds"))
  set.seed(as.integer(spec$generate_seed))
  request <- spec$n_cells
  if (is.list(request)) {  # {label: count}: exactly that many cells per label
    unknown <- setdiff(names(request), model$classes)
    if (length(unknown)) stop(paste("cannot generate unknown label(s):", paste(unknown, collapse = ", ")))
    labels <- rep(names(request), times = as.integer(unlist(request)))
  } else {
    labels <- sample(model$classes, as.integer(request), replace = TRUE, prob = model$weights)
  }
  X <- matrix(0, nrow = length(labels), ncol = ncol(model$mu))
  for (k in seq_along(model$classes)) {
    rows <- which(labels == model$classes[k])
    if (length(rows)) X[rows, ] <- draw(model, k, length(rows))
  }
  for (i in which(rowSums(X) == 0)) {  # a cell with no counts cannot be normalised: draw it again
    k <- match(labels[i], model$classes)
    for (try in 1:100) {
      x <- draw(model, k, 1)
      if (sum(x) > 0) {
        X[i, ] <- x
        break
      }
    }
  }
  out <- file.path(work, "generated")
  dir.create(out, showWarnings = FALSE)
  writeMM(as(X, "CsparseMatrix"), file.path(out, "counts.mtx"))
  write.csv(data.frame(cell = sprintf("r-nb-%d", seq_along(labels)), label = labels),
            file.path(out, "obs.csv"), row.names = FALSE)
  cat(sprintf("r-nb: generated %d cells in %.2fs\n", length(labels), proc.time()[["elapsed"]] - t0))
}

if (command == "fit") fit() else generate()
