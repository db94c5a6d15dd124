# memif-go with FD.io's released libmemif and VPP packages (never built here).
#   docker build -t memif-go .
#   docker run --rm --privileged memif-go          # ./build.sh test: unit, examples, DPDK and VPP interop
FROM ubuntu:24.04

ARG VPP_RELEASE=26.06-release
ARG GO_VERSION=1.26.8
ENV DEBIAN_FRONTEND=noninteractive

RUN apt-get update && apt-get install -y --no-install-recommends \
        ca-certificates curl gnupg gcc libc6-dev git iproute2 dpdk dpdk-dev tshark \
    && curl -fsSL https://packagecloud.io/install/repositories/fdio/release/script.deb.sh | bash \
    && apt-get install -y --no-install-recommends \
        libmemif=${VPP_RELEASE} libmemif-dev=${VPP_RELEASE} \
        vpp=${VPP_RELEASE} vpp-plugin-core=${VPP_RELEASE} \
    && rm -rf /var/lib/apt/lists/*

RUN curl -fsSL https://go.dev/dl/go${GO_VERSION}.linux-amd64.tar.gz | tar -C /usr/local -xz
ENV PATH=/usr/local/go/bin:$PATH

WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The same entry point as on a developer machine: build.sh finds the packaged
# header under /usr/include/memif.
RUN ./build.sh
CMD ["./build.sh", "test"]
