// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

/// @notice What the registry needs from a pool's revenue-share token.
interface IRevenueDistributor {
    function stablecoin() external view returns (IERC20);
    function distribute(uint256 amount) external;
}

/// @title AttestationRegistry
/// @notice Accepts each pool's revenue attestations, epoch after epoch, on M-of-N EIP-712
///         oracle signatures; keeps the Merkle root of the per-device leaves. An accepted
///         epoch is pending for a challenge period, during which a guardian or a current
///         oracle may veto it (with every later pending epoch of the pool); after it, the
///         epoch is final for good. Only final epochs are owed, and `fund` pays only what is
///         final and owed, distributing what actually arrived at the pool's token.
contract AttestationRegistry is AccessControl, EIP712, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using SafeCast for uint256;

    bytes32 public constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");
    bytes32 public constant GUARDIAN_ROLE = keccak256("GUARDIAN_ROLE");
    bytes32 public constant ATTESTATION_TYPEHASH = keccak256(
        "Attestation(bytes32 poolId,uint64 epoch,uint64 periodStart,uint64 periodEnd,uint256 energyWh,"
        "uint256 revenueMinor,uint256 investorAmount,uint32 deviceCount,bytes32 leavesRoot,"
        "uint64 oracleSetVersion,uint64 poolVetoes)"
    );
    /// Bounds of the challenge period: long enough to be used, short enough not to freeze
    /// revenue (the production default is 24 hours; the local chain uses a short one).
    uint64 public constant MIN_CHALLENGE_PERIOD = 1 minutes;
    uint64 public constant MAX_CHALLENGE_PERIOD = 7 days;
    /// Stablecoins with more decimals would overflow the token's lifetime funding cap early.
    uint8 public constant MAX_COIN_DECIMALS = 8;
    /// ISO 4217 minor-unit exponents go up to 4.
    uint8 public constant MAX_CURRENCY_EXPONENT = 4;

    uint8 public constant STATUS_NONE = 0;
    uint8 public constant STATUS_PENDING = 1;
    uint8 public constant STATUS_FINAL = 2;
    uint8 public constant STATUS_VETOED = 3;
    uint64 private constant VETOED = type(uint64).max;

    struct Attestation {
        bytes32 poolId;
        uint64 epoch;
        uint64 periodStart;
        uint64 periodEnd;
        uint256 energyWh;
        uint256 revenueMinor;
        uint256 investorAmount;
        uint32 deviceCount;
        bytes32 leavesRoot;
    }

    /// Storage form of an attestation: three slots (pool id and epoch are the keys).
    /// `challengeEnds` is 0 for an unknown epoch and VETOED for a vetoed one.
    struct StoredAttestation {
        bytes32 leavesRoot;
        uint64 periodStart;
        uint64 periodEnd;
        uint32 deviceCount;
        uint96 investorAmount;
        uint96 energyWh;
        uint96 revenueMinor;
        uint64 challengeEnds;
    }

    /// Per pool, three slots. Epochs up to `settledEpoch` are final and their investor
    /// amounts summed in `settled`; later ones are checked against the clock when read.
    struct Pool {
        address token;
        uint16 shareBps;
        uint8 currencyExponent;
        uint64 latestEpoch;
        uint64 lastPeriodEnd;
        uint64 lastChallengeEnds;
        uint64 settledEpoch;
        uint64 vetoes;
        uint128 settled;
        uint128 funded;
    }

    IERC20 public immutable stablecoin;
    uint8 public immutable coinDecimals;

    address[] private _oracles;
    mapping(address => bool) public isOracle;
    uint8 public threshold;
    /// Bumped by every `setOracles`; part of the signed digest, so a removed key's old
    /// signatures never count again, even if the key is re-added.
    uint64 public oracleSetVersion;
    uint64 public challengePeriod;

    mapping(bytes32 poolId => Pool) private _pools;
    mapping(bytes32 poolId => mapping(uint64 epoch => StoredAttestation)) private _attestations;
    mapping(address token => bytes32 poolId) public poolOfToken;

    event PoolRegistered(bytes32 indexed poolId, address indexed token, uint16 shareBps, uint8 currencyExponent);
    event OracleSetChanged(address[] oracles, uint8 threshold, uint64 version);
    event ChallengePeriodChanged(uint64 challengePeriod);
    event AttestationAccepted(
        bytes32 indexed poolId,
        uint64 indexed epoch,
        uint64 periodStart,
        uint64 periodEnd,
        uint256 energyWh,
        uint256 revenueMinor,
        uint256 investorAmount,
        uint32 deviceCount,
        bytes32 leavesRoot,
        bytes32 digest,
        uint64 challengeEnds
    );
    event EpochVetoed(bytes32 indexed poolId, uint64 indexed epoch, address indexed by, bytes32 reasonHash);
    event EpochFinalized(bytes32 indexed poolId, uint64 indexed epoch, uint256 investorAmount);
    event Funded(bytes32 indexed poolId, address indexed payer, uint256 amount, uint256 owedAfter);

    error ZeroAddress();
    error EmptyOracleSet();
    error DuplicateOracle(address oracle);
    error InvalidThreshold(uint256 oracles, uint256 threshold);
    error ChallengePeriodOutOfBounds(uint64 challengePeriod, uint64 min, uint64 max);
    error UnsupportedDecimals(uint8 decimals, uint8 max);
    error UnsupportedCurrencyExponent(uint8 exponent, uint8 max);
    error PoolAlreadyRegistered(bytes32 poolId);
    error TokenAlreadyRegistered(address token, bytes32 poolId);
    error PoolNotRegistered(bytes32 poolId);
    error InvalidShareBps(uint16 shareBps);
    error TokenStablecoinMismatch(address token);
    error BelowThreshold(uint256 signatures, uint256 threshold);
    error SignersNotAscending(address previous, address signer);
    error DuplicateSigner(address signer);
    error UnknownSigner(address signer);
    error UnexpectedEpoch(uint64 expected, uint64 got);
    error PeriodNotContiguous(uint64 expectedStart, uint64 got);
    error EmptyPeriod(uint64 periodStart, uint64 periodEnd);
    error PeriodNotEnded(uint64 periodEnd, uint256 nowTs);
    error InvestorAmountMismatch(uint256 expected, uint256 got);
    error NotGuardianOrOracle(address account);
    error NotPending(bytes32 poolId, uint64 epoch, uint8 status);
    error ZeroAmount();
    error FundingExceedsOwed(uint256 owed, uint256 amount);

    constructor(
        address admin,
        address operator,
        IERC20 stablecoin_,
        address[] memory oracles_,
        uint8 threshold_,
        uint64 challengePeriod_
    ) EIP712("GridshareAttestation", "1") {
        if (admin == address(0) || operator == address(0) || address(stablecoin_) == address(0)) {
            revert ZeroAddress();
        }
        uint8 decimals = IERC20Metadata(address(stablecoin_)).decimals();
        if (decimals > MAX_COIN_DECIMALS) revert UnsupportedDecimals(decimals, MAX_COIN_DECIMALS);
        stablecoin = stablecoin_;
        coinDecimals = decimals;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(OPERATOR_ROLE, operator);
        _setOracles(oracles_, threshold_);
        _setChallengePeriod(challengePeriod_);
    }

    // ----- administration -----

    /// @notice Replace the oracle set and bump its version. Requires n > threshold >= n/2 + 1;
    ///         with fewer than three oracles no such threshold exists, so there every oracle
    ///         must sign (threshold = n).
    function setOracles(address[] calldata oracles_, uint8 threshold_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setOracles(oracles_, threshold_);
    }

    /// @notice Change the challenge period of epochs submitted from now on.
    function setChallengePeriod(uint64 challengePeriod_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setChallengePeriod(challengePeriod_);
    }

    /// @notice Register a pool's token. `currencyExponent` is the minor-unit exponent of the
    ///         pool's revenue currency (2 for HKD cents). A token backs one pool only.
    function registerPool(bytes32 poolId, address token, uint16 shareBps, uint8 currencyExponent)
        external
        onlyRole(DEFAULT_ADMIN_ROLE)
    {
        if (token == address(0)) revert ZeroAddress();
        if (shareBps == 0 || shareBps > 10_000) revert InvalidShareBps(shareBps);
        if (currencyExponent > MAX_CURRENCY_EXPONENT) {
            revert UnsupportedCurrencyExponent(currencyExponent, MAX_CURRENCY_EXPONENT);
        }
        if (_pools[poolId].token != address(0)) revert PoolAlreadyRegistered(poolId);
        bytes32 other = poolOfToken[token];
        if (other != bytes32(0)) revert TokenAlreadyRegistered(token, other);
        if (IRevenueDistributor(token).stablecoin() != stablecoin) revert TokenStablecoinMismatch(token);
        _pools[poolId] = Pool({
            token: token,
            shareBps: shareBps,
            currencyExponent: currencyExponent,
            latestEpoch: 0,
            lastPeriodEnd: 0,
            lastChallengeEnds: 0,
            settledEpoch: 0,
            vetoes: 0,
            settled: 0,
            funded: 0
        });
        poolOfToken[token] = poolId;
        emit PoolRegistered(poolId, token, shareBps, currencyExponent);
    }

    // ----- attestations -----

    /// @notice Accept the attestation of the pool's next epoch, pending until the challenge
    ///         period ends. `signatures` are EIP-712 signatures of distinct current oracles,
    ///         ordered by ascending signer address.
    function submit(Attestation calldata a, bytes[] calldata signatures) external {
        Pool storage p = _pools[a.poolId];
        if (p.token == address(0)) revert PoolNotRegistered(a.poolId);
        uint64 expected = p.latestEpoch + 1;
        if (a.epoch != expected) revert UnexpectedEpoch(expected, a.epoch);
        if (a.periodEnd <= a.periodStart) revert EmptyPeriod(a.periodStart, a.periodEnd);
        if (a.periodEnd > block.timestamp) revert PeriodNotEnded(a.periodEnd, block.timestamp);
        if (expected > 1 && a.periodStart != p.lastPeriodEnd) {
            revert PeriodNotContiguous(p.lastPeriodEnd, a.periodStart);
        }
        uint256 share = _investorShare(a.revenueMinor, p.shareBps, p.currencyExponent);
        if (a.investorAmount != share) revert InvestorAmountMismatch(share, a.investorAmount);

        bytes32 digest = _digest(a, p.vetoes);
        _checkSignatures(digest, signatures);

        // Challenge windows end in epoch order even if the period was shortened meanwhile,
        // so "every later pending epoch" is a suffix and finality moves forward only.
        uint64 ends = uint64(block.timestamp) + challengePeriod;
        if (ends < p.lastChallengeEnds) ends = p.lastChallengeEnds;
        p.latestEpoch = expected;
        p.lastPeriodEnd = a.periodEnd;
        p.lastChallengeEnds = ends;
        _attestations[a.poolId][expected] = StoredAttestation({
            leavesRoot: a.leavesRoot,
            periodStart: a.periodStart,
            periodEnd: a.periodEnd,
            deviceCount: a.deviceCount,
            investorAmount: a.investorAmount.toUint96(),
            energyWh: a.energyWh.toUint96(),
            revenueMinor: a.revenueMinor.toUint96(),
            challengeEnds: ends
        });
        _emitAccepted(a, digest, ends);
    }

    function _emitAccepted(Attestation calldata a, bytes32 digest, uint64 ends) private {
        emit AttestationAccepted(
            a.poolId,
            a.epoch,
            a.periodStart,
            a.periodEnd,
            a.energyWh,
            a.revenueMinor,
            a.investorAmount,
            a.deviceCount,
            a.leavesRoot,
            digest,
            ends
        );
    }

    /// @notice Void a pending epoch and every later (pending) epoch of the pool; they may be
    ///         submitted again. Only a guardian or a current oracle, only inside the window.
    function veto(bytes32 poolId, uint64 epoch, bytes32 reasonHash) external {
        if (!isOracle[msg.sender] && !hasRole(GUARDIAN_ROLE, msg.sender)) revert NotGuardianOrOracle(msg.sender);
        Pool storage p = _pools[poolId];
        if (p.token == address(0)) revert PoolNotRegistered(poolId);
        uint8 status = epochStatus(poolId, epoch);
        if (status != STATUS_PENDING) revert NotPending(poolId, epoch, status);
        mapping(uint64 => StoredAttestation) storage stored = _attestations[poolId];
        uint64 latest = p.latestEpoch;
        for (uint64 e = epoch; e <= latest; ++e) {
            stored[e].challengeEnds = VETOED;
            emit EpochVetoed(poolId, e, msg.sender, reasonHash);
        }
        p.latestEpoch = epoch - 1;
        p.lastPeriodEnd = epoch > 1 ? stored[epoch - 1].periodEnd : 0;
        p.lastChallengeEnds = epoch > 1 ? stored[epoch - 1].challengeEnds : 0;
        p.vetoes += 1;
    }

    /// @notice Record the epochs whose window has ended as final (emits EpochFinalized for
    ///         each). Anyone may call it; `fund` does it first. Returns the final epoch.
    function settle(bytes32 poolId) public returns (uint64) {
        Pool storage p = _pools[poolId];
        if (p.token == address(0)) revert PoolNotRegistered(poolId);
        uint64 e = p.settledEpoch;
        uint256 sum = p.settled;
        uint64 latest = p.latestEpoch;
        mapping(uint64 => StoredAttestation) storage stored = _attestations[poolId];
        while (e < latest && stored[e + 1].challengeEnds <= block.timestamp) {
            ++e;
            uint256 amount = stored[e].investorAmount;
            sum += amount;
            emit EpochFinalized(poolId, e, amount);
        }
        if (e != p.settledEpoch) {
            p.settledEpoch = e;
            p.settled = sum.toUint128();
        }
        return e;
    }

    /// @notice The EIP-712 digest the oracles sign: the attestation, the current oracle-set
    ///         version and the pool's veto count (so a vetoed epoch needs fresh signatures).
    function hashAttestation(Attestation calldata a) external view returns (bytes32) {
        return _digest(a, _pools[a.poolId].vetoes);
    }

    /// @notice Check a per-device leaf (as stored in the tree: keccak256(bytes.concat(
    ///         keccak256(abi.encode(fields))))) against the root of a pending or final epoch,
    ///         sorted-pair hashing.
    function verifyLeaf(bytes32 poolId, uint64 epoch, bytes32 leaf, bytes32[] calldata proof)
        external
        view
        returns (bool)
    {
        StoredAttestation storage s = _attestations[poolId][epoch];
        bytes32 root = s.leavesRoot;
        return root != bytes32(0) && s.challengeEnds != VETOED && MerkleProof.verifyCalldata(proof, root, leaf);
    }

    // ----- funding -----

    /// @notice Pay up to `amount` of what is final and owed: pulled from the caller straight
    ///         into the pool's token, which distributes what arrived (a coin that takes a fee
    ///         on transfer pays less than `amount`; only what arrived counts as funded).
    function fund(bytes32 poolId, uint256 amount) external onlyRole(OPERATOR_ROLE) nonReentrant {
        if (amount == 0) revert ZeroAmount();
        settle(poolId);
        Pool storage p = _pools[poolId];
        address token = p.token;
        uint256 owed_ = uint256(p.settled) - p.funded;
        if (amount > owed_) revert FundingExceedsOwed(owed_, amount);
        uint256 before = stablecoin.balanceOf(token);
        stablecoin.safeTransferFrom(msg.sender, token, amount);
        uint256 received = stablecoin.balanceOf(token) - before;
        if (received == 0) revert ZeroAmount();
        // A coin cannot deliver more than was sent without breaking its own accounting; the
        // cap keeps `funded <= settled` even then.
        if (received > owed_) received = owed_;
        p.funded = uint128(uint256(p.funded) + received);
        IRevenueDistributor(token).distribute(received);
        emit Funded(poolId, msg.sender, received, owed_ - received);
    }

    // ----- views -----

    function latestEpoch(bytes32 poolId) external view returns (uint64) {
        return _pools[poolId].latestEpoch;
    }

    /// @notice 0 none, 1 pending, 2 final, 3 vetoed (and not submitted again since).
    function epochStatus(bytes32 poolId, uint64 epoch) public view returns (uint8) {
        uint64 ends = _attestations[poolId][epoch].challengeEnds;
        if (ends == 0) return STATUS_NONE;
        if (ends == VETOED) return STATUS_VETOED;
        return ends > block.timestamp ? STATUS_PENDING : STATUS_FINAL;
    }

    /// @notice When the epoch's challenge window ends (0 if none or vetoed).
    function challengeEnds(bytes32 poolId, uint64 epoch) external view returns (uint64) {
        uint64 ends = _attestations[poolId][epoch].challengeEnds;
        return ends == VETOED ? 0 : ends;
    }

    /// @notice The last final epoch of the pool (0 if none yet).
    function finalizedEpoch(bytes32 poolId) external view returns (uint64 epoch) {
        (epoch,) = _final(poolId);
    }

    /// @notice Investor share of the final epochs not yet funded.
    function owed(bytes32 poolId) external view returns (uint256) {
        (, uint256 sum) = _final(poolId);
        return sum - _pools[poolId].funded;
    }

    /// @notice Investor share of the epochs still in their challenge window.
    function pendingAmount(bytes32 poolId) external view returns (uint256 sum) {
        Pool storage p = _pools[poolId];
        (uint64 e,) = _final(poolId);
        for (++e; e <= p.latestEpoch; ++e) {
            sum += _attestations[poolId][e].investorAmount;
        }
    }

    function funded(bytes32 poolId) external view returns (uint256) {
        return _pools[poolId].funded;
    }

    /// @notice Everything final for investors: owed + funded.
    function attested(bytes32 poolId) external view returns (uint256 sum) {
        (, sum) = _final(poolId);
    }

    /// @notice Vetoes of the pool so far (part of the signed digest).
    function vetoes(bytes32 poolId) external view returns (uint64) {
        return _pools[poolId].vetoes;
    }

    function pool(bytes32 poolId)
        external
        view
        returns (address token, uint16 shareBps, uint64 latestEpoch_, uint64 lastPeriodEnd, uint8 currencyExponent)
    {
        Pool storage p = _pools[poolId];
        return (p.token, p.shareBps, p.latestEpoch, p.lastPeriodEnd, p.currencyExponent);
    }

    /// @notice The investor amount the registry requires for `revenueMinor` of the pool.
    function investorShare(bytes32 poolId, uint256 revenueMinor) external view returns (uint256) {
        Pool storage p = _pools[poolId];
        return _investorShare(revenueMinor, p.shareBps, p.currencyExponent);
    }

    /// @notice A stored attestation (all zero for an unknown pool or epoch).
    function attestation(bytes32 poolId, uint64 epoch) external view returns (Attestation memory a) {
        StoredAttestation storage s = _attestations[poolId][epoch];
        if (s.periodEnd == 0) return a;
        a = Attestation({
            poolId: poolId,
            epoch: epoch,
            periodStart: s.periodStart,
            periodEnd: s.periodEnd,
            energyWh: s.energyWh,
            revenueMinor: s.revenueMinor,
            investorAmount: s.investorAmount,
            deviceCount: s.deviceCount,
            leavesRoot: s.leavesRoot
        });
    }

    function oracles() external view returns (address[] memory) {
        return _oracles;
    }

    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    // ----- internals -----

    /// revenue (minor units, 10^-exponent) x share (bps, 10^-4) in coin units (10^-decimals),
    /// rounded down: never more than the exact share.
    function _investorShare(uint256 revenueMinor, uint16 shareBps, uint8 exponent) private view returns (uint256) {
        uint256 gross = revenueMinor * shareBps;
        uint256 down = uint256(exponent) + 4;
        uint256 up = coinDecimals;
        return up >= down ? gross * 10 ** (up - down) : gross / 10 ** (down - up);
    }

    function _final(bytes32 poolId) private view returns (uint64 e, uint256 sum) {
        Pool storage p = _pools[poolId];
        e = p.settledEpoch;
        sum = p.settled;
        mapping(uint64 => StoredAttestation) storage stored = _attestations[poolId];
        while (e < p.latestEpoch && stored[e + 1].challengeEnds <= block.timestamp) {
            ++e;
            sum += stored[e].investorAmount;
        }
    }

    function _digest(Attestation calldata a, uint64 poolVetoes) private view returns (bytes32) {
        // Every field is static, so abi.encode(a) is the nine words of the struct in order.
        return _hashTypedDataV4(
            keccak256(bytes.concat(abi.encode(ATTESTATION_TYPEHASH, a), abi.encode(oracleSetVersion, poolVetoes)))
        );
    }

    function _checkSignatures(bytes32 digest, bytes[] calldata signatures) private view {
        uint256 needed = threshold;
        if (signatures.length < needed) revert BelowThreshold(signatures.length, needed);
        address previous = address(0);
        for (uint256 i = 0; i < signatures.length; ++i) {
            address signer = ECDSA.recover(digest, signatures[i]);
            if (signer == previous) revert DuplicateSigner(signer);
            if (signer < previous) revert SignersNotAscending(previous, signer);
            if (!isOracle[signer]) revert UnknownSigner(signer);
            previous = signer;
        }
    }

    function _setChallengePeriod(uint64 challengePeriod_) private {
        if (challengePeriod_ < MIN_CHALLENGE_PERIOD || challengePeriod_ > MAX_CHALLENGE_PERIOD) {
            revert ChallengePeriodOutOfBounds(challengePeriod_, MIN_CHALLENGE_PERIOD, MAX_CHALLENGE_PERIOD);
        }
        challengePeriod = challengePeriod_;
        emit ChallengePeriodChanged(challengePeriod_);
    }

    function _setOracles(address[] memory oracles_, uint8 threshold_) private {
        uint256 n = oracles_.length;
        if (n == 0) revert EmptyOracleSet();
        bool valid = threshold_ >= n / 2 + 1 && (threshold_ < n || (n < 3 && threshold_ == n));
        if (!valid) revert InvalidThreshold(n, threshold_);
        uint256 previous = _oracles.length;
        for (uint256 i = 0; i < previous; ++i) {
            isOracle[_oracles[i]] = false;
        }
        for (uint256 i = 0; i < n; ++i) {
            address o = oracles_[i];
            if (o == address(0)) revert ZeroAddress();
            if (isOracle[o]) revert DuplicateOracle(o);
            isOracle[o] = true;
        }
        _oracles = oracles_;
        threshold = threshold_;
        uint64 version = oracleSetVersion + 1;
        oracleSetVersion = version;
        emit OracleSetChanged(oracles_, threshold_, version);
    }
}
