# syntax=docker/dockerfile:1
# memif-go's test image: your libmemif 4.0, VPP from FD.io's release packages,
# DPDK testpmd and tshark from Debian, Go from the official golang image.
#
#   docker build --build-context libmemif=/usr/local -t memif-go .
#   docker run --rm memif-go      # ./build.sh test: unit, examples, DPDK and VPP interop
#
# FD.io publishes no libmemif 4.0 package and nothing here builds it: the
# libmemif context is a prefix (include/libmemif.h, lib/libmemif.so*) where you
# installed it (README, "Requirements"). Without it the build stops at its
# first RUN with one line saying so. The shell steps are docker/image.sh,
# which .ci/run runs too. Privileges: see README, "Docker".

ARG GO_VERSION=1.26
ARG DEBIAN_RELEASE=bookworm

FROM golang:${GO_VERSION}-${DEBIAN_RELEASE} AS go

# Replaced by --build-context libmemif=<prefix>; empty otherwise.
FROM scratch AS libmemif

FROM debian:${DEBIAN_RELEASE}-slim
# Every VPP package is pinned to VPP_VERSION, from FD.io's repository VPP_REPO
# (release: the releases; NNNN: builds of branch stable/NNNN).
ARG VPP_VERSION=26.06-release
ARG VPP_REPO=release
COPY docker/image.sh /usr/local/bin/memif-go-image
# The bracketed globs match nothing, instead of failing, where the context
# lacks a folder, so the check below can say what is missing.
COPY --from=libmemif inclu[d]e/libmemif.h inclu[d]e/memif.h /tmp/libmemif/include/
COPY --from=libmemif li[b]/libmemif.so* /tmp/libmemif/lib/
RUN memif-go-image install-libmemif /tmp/libmemif /usr/local "the libmemif build context" && rm -rf /tmp/libmemif
RUN VPP_VERSION="$VPP_VERSION" VPP_REPO="$VPP_REPO" memif-go-image install-packages

COPY --from=go /usr/local/go /usr/local/go
ENV PATH=/usr/local/go/bin:$PATH REQUIRE_VPP=1
WORKDIR /src
COPY go.mod go.sum ./
COPY examples/go.mod examples/go.sum examples/
RUN go mod download && cd examples && go mod download
COPY . .
# The same entry point as on a developer machine.
RUN ./build.sh
CMD ["docker/image.sh", "test"]
